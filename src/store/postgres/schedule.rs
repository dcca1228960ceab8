//! Scheduling on PostgreSQL (issue 11): what a job's end does to the jobs that run
//! after it, and the queue settings (`queue pause/resume/concurrency`, `queue list`).
//!
//! Invariants, as on SQLite: every statement runs in the caller's transaction, so a
//! release or a cascade of cancels commits with the finish, cancel or retry that
//! caused it; `blocked_by` is recounted from `job_dependencies`, never decremented.
//! An enqueue naming a job in `after` locks that job's row until it commits
//! (`MARK_HAS_DEPENDENTS`), so the job cannot finish unseen in between. Queue changes
//! NOTIFY, so idle workers on every host look again at once.

use postgres::Transaction;

use super::listen::notify;
use super::{Db, Step};
use crate::job::{Job, JobState, Transition};
use crate::store::Result;
use crate::store::rows::{job_columns, job_from_row};
use crate::store::schedule::{self, Dependents, QueueChange, QueueRow};

/// Recounts the unfinished `after` jobs of every pending job waiting for `$1`; a
/// job whose count reaches 0 becomes ready, as if it had waited since now.
const RELEASE_DEPENDENTS: &str = "UPDATE jobs j SET blocked_by = (SELECT count(*) \
        FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
        WHERE d.job_id = j.id AND a.state <> 'completed'), \
        next_run_at = greatest(j.next_run_at, now_ms()), updated_at = now_ms() \
    WHERE j.id IN (SELECT job_id FROM job_dependencies WHERE after_id = $1) \
        AND j.state = 'pending' AND j.blocked_by > 0";

/// The pending jobs still waiting for job `$1`, locked.
const READ_WAITING_FOR: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE id IN (SELECT job_id FROM job_dependencies WHERE after_id = $1) \
     AND state = 'pending' AND blocked_by > 0 ORDER BY seq FOR UPDATE"
);

/// Cancels a job still waiting for the jobs it runs after; returns whether jobs
/// run after it in turn.
const CANCEL_BLOCKED: &str = "UPDATE jobs SET state = $2, last_error = $3, \
        finished_at = now_ms(), updated_at = now_ms(), blocked_by = 0, scheduled = false \
    WHERE id = $1 AND state = 'pending' AND blocked_by > 0 RETURNING has_dependents";

/// The queues with settings of their own.
const READ_QUEUES: &str = "SELECT name, paused, concurrency FROM queues ORDER BY name";

const PAUSE_QUEUE: &str = "INSERT INTO queues (name, paused) VALUES ($1, $2) \
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused";

const LIMIT_QUEUE: &str = "INSERT INTO queues (name, concurrency) VALUES ($1, $2) \
    ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency";

/// The dependency reads and writes of one transaction. The trait speaks
/// [`StoreError`]; the driver's errors pass through it unchanged.
struct TxDependents<'a, 'db, 'tx> {
    db: &'a mut Db<'db, Transaction<'tx>>,
}

impl Dependents for TxDependents<'_, '_, '_> {
    fn release(&mut self, id: &str) -> Result<()> {
        self.db.execute(RELEASE_DEPENDENTS, &[&id])?;
        Ok(())
    }

    fn waiting_for(&mut self, id: &str) -> Result<Vec<Job>> {
        let rows = self.db.query(READ_WAITING_FOR, &[&id])?;
        rows.iter().map(job_from_row).collect()
    }

    fn cancel_waiting(&mut self, job: &Job, transition: &Transition) -> Result<bool> {
        let row = self.db.query_opt(
            CANCEL_BLOCKED,
            &[&job.id, &transition.state.as_str(), &transition.last_error],
        )?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Ok(false),
        }
    }
}

/// Carries the end of job `id` (now in `state`) to the jobs that run after it.
pub(super) fn settle(db: &mut Db<'_, Transaction<'_>>, id: &str, state: JobState) -> Step<()> {
    schedule::settle_dependents(&mut TxDependents { db }, id, state)
}

pub(super) fn queues<C: postgres::GenericClient>(db: &mut Db<'_, C>) -> Step<Vec<QueueRow>> {
    let mut rows = Vec::new();
    for row in db.query(READ_QUEUES, &[])? {
        rows.push(QueueRow {
            name: row.try_get(0)?,
            paused: row.try_get(1)?,
            concurrency: row.try_get(2)?,
            ..QueueRow::default()
        });
    }
    for (queue, state, n) in super::completed::job_counts(db)?.0 {
        schedule::add_count(&mut rows, &queue, &state, n);
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

pub(super) fn set_queue_in(
    db: &mut Db<'_, Transaction<'_>>,
    name: &str,
    change: QueueChange,
    channel: &str,
) -> Step<()> {
    match change {
        QueueChange::Pause | QueueChange::Resume => {
            db.execute(PAUSE_QUEUE, &[&name, &(change == QueueChange::Pause)])?
        }
        QueueChange::Concurrency(limit) => db.execute(LIMIT_QUEUE, &[&name, &limit])?,
    };
    notify(db, channel)?;
    Ok(())
}
