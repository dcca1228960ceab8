//! Scheduling on SQLite (issue 11): what a job's end does to the jobs that run
//! after it, and the queue settings (`queue pause/resume/concurrency`, `queue list`).
//!
//! Invariants: every statement here runs in the caller's write transaction, so a
//! release or a cascade of cancels is all or nothing with the finish, cancel or
//! retry that caused it; `blocked_by` is recounted from `job_dependencies` rather
//! than decremented, so a dependency that completes twice (retried) cannot release
//! a job early.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{db_error, job_from_row};
use crate::job::{Job, JobState, Transition};
use crate::store::rows::job_columns;
use crate::store::schedule::{Dependents, QueueChange, QueueRow};
use crate::store::{Result, schedule};

/// Recounts the unfinished `after` jobs of every pending job waiting for `?1`; a
/// job whose count reaches 0 becomes ready, as if it had waited since `?2`.
const RELEASE_DEPENDENTS: &str = "UPDATE jobs SET blocked_by = (SELECT count(*) \
     FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
     WHERE d.job_id = jobs.id AND a.state <> 'completed'), \
     next_run_at = max(next_run_at, ?2), updated_at = ?2 \
     WHERE id IN (SELECT job_id FROM job_dependencies WHERE after_id = ?1) \
     AND state = 'pending' AND blocked_by > 0";

/// The pending jobs still waiting for job `?1`.
const READ_WAITING_FOR: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE id IN (SELECT job_id FROM job_dependencies WHERE after_id = ?1) \
     AND state = 'pending' AND blocked_by > 0 ORDER BY seq"
);

/// Cancels a job still waiting for the jobs it runs after; returns whether jobs
/// run after it in turn.
const CANCEL_BLOCKED: &str = "UPDATE jobs SET state = ?2, last_error = ?3, finished_at = ?4, \
     updated_at = ?4, blocked_by = 0, scheduled = 0 WHERE id = ?1 AND state = 'pending' AND blocked_by > 0 \
     RETURNING has_dependents";

/// Recounts a retried job's unfinished `after` jobs.
const RECOUNT_BLOCKED: &str = "UPDATE jobs SET blocked_by = (SELECT count(*) \
     FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
     WHERE d.job_id = jobs.id AND a.state <> 'completed') \
     WHERE id = ?1 AND state = 'pending'";

/// The queues with settings of their own.
const READ_QUEUES: &str = "SELECT name, paused, concurrency FROM queues ORDER BY name";

const PAUSE_QUEUE: &str = "INSERT INTO queues (name, paused) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused";

const LIMIT_QUEUE: &str = "INSERT INTO queues (name, concurrency) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency";

/// The dependency reads and writes of one write transaction.
pub(super) struct TxDependents<'a, 'conn> {
    pub tx: &'a Transaction<'conn>,
    pub now: i64,
}

impl Dependents for TxDependents<'_, '_> {
    fn release(&mut self, id: &str) -> Result<()> {
        self.tx
            .prepare_cached(RELEASE_DEPENDENTS)
            .and_then(|mut s| s.execute(params![id, self.now]))
            .map_err(db_error)?;
        Ok(())
    }

    fn waiting_for(&mut self, id: &str) -> Result<Vec<Job>> {
        let mut stmt = self.tx.prepare_cached(READ_WAITING_FOR).map_err(db_error)?;
        let rows = stmt.query_map([id], job_from_row).map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn cancel_waiting(&mut self, job: &Job, transition: &Transition) -> Result<bool> {
        let has_dependents: Option<bool> = self
            .tx
            .prepare_cached(CANCEL_BLOCKED)
            .and_then(|mut s| {
                s.query_row(
                    params![
                        job.id,
                        transition.state.as_str(),
                        transition.last_error,
                        self.now
                    ],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(db_error)?;
        Ok(has_dependents.unwrap_or(false))
    }
}

/// Carries the end of job `id` (now in `state`) to the jobs that run after it.
pub(super) fn settle(tx: &Transaction<'_>, now: i64, id: &str, state: JobState) -> Result<()> {
    schedule::settle_dependents(&mut TxDependents { tx, now }, id, state)
}

/// A retried job waits again for those of its `after` jobs that have not completed.
pub(super) fn recount_blocked(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.prepare_cached(RECOUNT_BLOCKED)
        .and_then(|mut s| s.execute([id]))
        .map_err(db_error)?;
    Ok(())
}

pub(super) fn queues(tx: &Transaction<'_>, now: i64) -> Result<Vec<QueueRow>> {
    let mut rows: Vec<QueueRow> = Vec::new();
    let mut stmt = tx.prepare_cached(READ_QUEUES).map_err(db_error)?;
    let settings = stmt
        .query_map([], |r| {
            Ok(QueueRow {
                name: r.get(0)?,
                paused: r.get(1)?,
                concurrency: r.get(2)?,
                ..QueueRow::default()
            })
        })
        .map_err(db_error)?;
    for row in settings {
        rows.push(row.map_err(db_error)?);
    }
    for (queue, state, n) in super::stats::job_counts(tx, now)?.0 {
        schedule::add_count(&mut rows, &queue, &state, n);
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

pub(super) fn set_queue(tx: &Transaction<'_>, name: &str, change: QueueChange) -> Result<()> {
    match change {
        QueueChange::Pause | QueueChange::Resume => tx
            .prepare_cached(PAUSE_QUEUE)
            .and_then(|mut s| s.execute(params![name, change == QueueChange::Pause])),
        QueueChange::Concurrency(limit) => tx
            .prepare_cached(LIMIT_QUEUE)
            .and_then(|mut s| s.execute(params![name, limit])),
    }
    .map_err(db_error)?;
    Ok(())
}
