//! What users do to jobs besides enqueueing them: `retry` finished jobs, `cancel`
//! unfinished ones and `clean` old finished ones away.
//!
//! Invariants kept here:
//! - Each operation runs in the caller's write transaction and decides with
//!   [`crate::job`] ([`job::after_retry`], [`job::plan_cancel`]) on the jobs as read
//!   in it, so it is all or nothing: a refused id changes nothing.
//! - Every write re-checks the state it decided on, so a write cannot land on a job
//!   that changed since (belt and braces: the write transaction already keeps every
//!   other writer out).
//! - `clean` deletes only finished jobs, with their attempts and output chunks.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{completed, db_error, job_from_row, millis, schedule, workers};
use crate::error::StoreError;
use crate::job::{self, Cancel, Job, JobState, Transition};
use crate::store::rows::job_columns;
use crate::store::{CleanRequest, Cleaned, Result, control};

/// One job by id, to decide about.
const READ_JOB_BY_ID: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");

/// The jobs in any of the (up to three) states `?1`..`?3`, oldest first. Completed
/// jobs have no index, so this reads the table in creation order (the dead letter
/// queue alone goes through its own index: [`READ_DEAD_JOBS`]).
const READ_JOBS_IN_STATES: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state IN (?1, ?2, ?3) ORDER BY seq"
);

/// The whole dead letter queue, oldest first, for `dlq retry --all` and
/// `retry --state dead` (PostgreSQL locks the rows instead: `LOCK_JOBS_IN_STATES`).
const READ_DEAD_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_dead WHERE state = 'dead' ORDER BY seq"
);

/// Applies a `retry` (or `dlq retry`) transition to a job that is still finished.
const RETRY_FINISHED: &str = "UPDATE jobs SET state = ?2, attempts = ?3, interruptions = ?4, \
     next_run_at = ?5, exit_code = ?6, last_error = ?7, updated_at = ?8, scheduled = ?5 > ?8 \
     WHERE id = ?1 AND state IN ('completed', 'dead', 'cancelled') RETURNING unique_key";

/// Cancels a job that is still waiting; returns whether jobs run after it.
const CANCEL_WAITING: &str = "UPDATE jobs SET state = ?2, attempts = ?3, interruptions = ?4, \
     exit_code = ?5, last_error = ?6, finished_at = ?7, updated_at = ?7, blocked_by = 0, \
     scheduled = 0 \
     WHERE id = ?1 AND state IN ('pending', 'failed') RETURNING has_dependents";

/// The unfinished job other than `?2` that holds unique key `?1`.
const FIND_UNIQUE_HOLDER: &str = "SELECT id FROM jobs INDEXED BY jobs_unique \
     WHERE unique_key = ?1 AND unique_key IS NOT NULL \
     AND state IN ('pending', 'processing', 'failed') AND id <> ?2";

/// Asks the worker running a job (under lease `?2`) to stop it.
const REQUEST_CANCEL: &str = "UPDATE jobs SET cancel_requested = 1, updated_at = ?3 \
     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing'";

/// Deletes up to `?5` (-1: all) jobs in states `?1`..`?3` that finished by `?4`,
/// oldest first; returns their ids, `pos`s, queues, states and leases. In creation
/// order (`seq`, through `jobs_seq`), so the scan of a large history stops as soon
/// as it has found enough (finished jobs have no index of their own: it would cost
/// every finish); the rows are then deleted by their `pos` (the rowid).
const DELETE_FINISHED_JOBS: &str = "DELETE FROM jobs WHERE pos IN (SELECT pos FROM jobs \
     WHERE state IN (?1, ?2, ?3) AND coalesce(finished_at, updated_at) <= ?4 \
     ORDER BY seq LIMIT ?5) AND state IN (?1, ?2, ?3) \
     RETURNING id, pos, queue, state, lease_token";

/// The history of a deleted job, by its `pos` (the attempts' key).
pub(super) const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE job_pos = ?1";

/// Output chunks of a deleted job (normally none: an attempt's end deletes them).
const DELETE_CHUNKS: &str = "DELETE FROM output_chunks WHERE job_id = ?1";

/// `retry` and `dlq retry`: starts the jobs `ids` (or every job in `states`) over,
/// each as `rule` decides, all or nothing.
pub(super) fn retry(
    tx: &Transaction<'_>,
    now: i64,
    ids: Option<&[String]>,
    states: &[JobState],
    rule: control::RetryRule,
) -> Result<Vec<String>> {
    let decided: Vec<(String, Transition)> = match ids {
        Some(ids) => {
            let mut decided = Vec::with_capacity(ids.len());
            for id in ids {
                let found = read_job(tx, id)?;
                decided.push((id.clone(), rule(id, found.as_ref())?));
            }
            decided
        }
        None => jobs_in_states(tx, &control::finished_states(states)?)?
            .iter()
            .map(|j| Ok((j.id.clone(), rule(&j.id, Some(j))?)))
            .collect::<Result<_>>()?,
    };
    let mark = completed::mark(tx)?;
    for (id, t) in &decided {
        // A completed job leaves the count of completed_rollup, if it is in it.
        completed::unroll_job(tx, id, mark)?;
        let applied = tx
            .prepare_cached(RETRY_FINISHED)
            .and_then(|mut s| {
                s.query_row(
                    params![
                        id,
                        t.state.as_str(),
                        t.attempts,
                        t.interruptions,
                        now + millis(t.run_after),
                        t.exit_code,
                        t.last_error,
                        now
                    ],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()
            })
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => unique_taken(tx, id),
                _ => db_error(e),
            })?;
        if applied.is_some() {
            schedule::recount_blocked(tx, id)?;
        }
    }
    Ok(decided.into_iter().map(|(id, _)| id).collect())
}

/// `cancel`: all of `ids` or none. Waiting jobs end at once; running ones are
/// marked for their worker (the commit wakes workers through the WAL watch).
pub(super) fn cancel(
    tx: &Transaction<'_>,
    now: i64,
    ids: &[String],
) -> Result<Vec<(String, Cancel)>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(read_job(tx, id)?);
    }
    let plan = job::plan_cancel(ids, |id| found.iter().find(|j| j.id == id))?;
    for (id, decision) in &plan {
        match decision {
            Cancel::Now(t) => {
                let has_dependents: Option<bool> = tx
                    .prepare_cached(CANCEL_WAITING)
                    .and_then(|mut s| {
                        s.query_row(
                            params![
                                id,
                                t.state.as_str(),
                                t.attempts,
                                t.interruptions,
                                t.exit_code,
                                t.last_error,
                                now
                            ],
                            |r| r.get(0),
                        )
                        .optional()
                    })
                    .map_err(db_error)?;
                if has_dependents == Some(true) {
                    schedule::settle(tx, now, id, JobState::Cancelled)?;
                }
            }
            Cancel::Requested { lease_token } => {
                tx.prepare_cached(REQUEST_CANCEL)
                    .and_then(|mut s| s.execute(params![id, lease_token, now]))
                    .map_err(db_error)?;
            }
        }
    }
    Ok(plan)
}

/// A job `clean` deleted: id, `pos`, queue, state, lease.
type Gone = (String, i64, String, String, i64);

/// `clean` (and retention): deletes finished jobs with their history (and from
/// the rollup of completed jobs), and worker rows that ended over a day ago.
pub(super) fn clean(tx: &Transaction<'_>, now: i64, request: &CleanRequest) -> Result<Cleaned> {
    let states = control::finished_states(&request.states)?;
    let [a, b, c] = state_params(&states);
    let finished_by = now - request.older_than.map_or(0, millis);
    let limit = request
        .limit
        .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let gone: Vec<Gone> = {
        let mut stmt = tx.prepare_cached(DELETE_FINISHED_JOBS).map_err(db_error)?;
        let rows = stmt
            .query_map(params![a, b, c, finished_by, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)?
    };
    let mut unrolled = completed::Unrolled::new(tx)?;
    let mut attempts = tx.prepare_cached(DELETE_ATTEMPTS).map_err(db_error)?;
    let mut chunks = tx.prepare_cached(DELETE_CHUNKS).map_err(db_error)?;
    for (id, pos, queue, state, lease_token) in &gone {
        unrolled.note(tx, *pos, queue, state, *lease_token)?;
        attempts.execute([pos]).map_err(db_error)?;
        chunks.execute([id]).map_err(db_error)?;
    }
    unrolled.finish(tx)?;
    let workers = workers::forget_ended(tx, now - millis(control::ENDED_WORKER_KEPT))?;
    Ok(Cleaned {
        jobs: gone.len() as u64,
        workers,
    })
}

/// The refusal of a retry whose unique key an unfinished job holds.
fn unique_taken(tx: &Transaction<'_>, id: &str) -> StoreError {
    let holder: Option<String> = read_job(tx, id).ok().flatten().and_then(|job| {
        let key = job.unique_key?;
        tx.prepare_cached(FIND_UNIQUE_HOLDER)
            .and_then(|mut s| s.query_row(params![key, id], |r| r.get(0)).optional())
            .ok()
            .flatten()
    });
    control::unique_key_taken(id, holder.as_deref())
}

fn read_job(tx: &Transaction<'_>, id: &str) -> Result<Option<Job>> {
    tx.prepare_cached(READ_JOB_BY_ID)
        .and_then(|mut s| s.query_row([id], job_from_row).optional())
        .map_err(db_error)
}

fn jobs_in_states(tx: &Transaction<'_>, states: &[JobState]) -> Result<Vec<Job>> {
    if states == [JobState::Dead] {
        let mut stmt = tx.prepare_cached(READ_DEAD_JOBS).map_err(db_error)?;
        let rows = stmt.query_map([], job_from_row).map_err(db_error)?;
        return rows.collect::<rusqlite::Result<_>>().map_err(db_error);
    }
    let [a, b, c] = state_params(states);
    let mut stmt = tx.prepare_cached(READ_JOBS_IN_STATES).map_err(db_error)?;
    let rows = stmt
        .query_map(params![a, b, c], job_from_row)
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Up to three states as the parameters of `state IN (?1, ?2, ?3)`: missing ones
/// are NULL, which matches nothing.
fn state_params(states: &[JobState]) -> [Option<&'static str>; 3] {
    let mut params = [None; 3];
    for (slot, state) in params.iter_mut().zip(states) {
        *slot = Some(state.as_str());
    }
    params
}
