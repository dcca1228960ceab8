//! Jobs outside the worker round trip: enqueueing, reading one, listing and counting.
//!
//! Every read of a set of jobs goes through the partial index of its state
//! (`jobs_ready`, `jobs_running`, `jobs_dead`, `jobs_cancelled`; see the schema
//! files), named with `INDEXED BY` so that the planner cannot fall back to scanning
//! the whole history.

use std::collections::BTreeMap;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};

use super::{attempt_from_row, db_error, job_from_row, millis, now_ms};
use crate::config::Config;
use crate::error::StoreError;
use crate::job::{Job, JobState, NewJob};
use crate::store::rows::{JOB_COLUMN_COUNT, attempt_columns, job_columns};
use crate::store::{AttemptRecord, Counts, Result};

/// The stored defaults for `max_retries` and `timeout_ms`, for jobs enqueued without
/// their own.
const READ_ENQUEUE_DEFAULTS: &str =
    "SELECT key, value FROM settings WHERE key IN ('max-retries', 'job-timeout')";

/// Adds one new job, waiting to run now.
const INSERT_JOBS: &str = "INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, \
     updated_at, next_run_at, timeout_ms) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5, ?5, ?6)";

/// One job by id, followed by the output tail of its latest attempt.
const READ_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", (SELECT output_tail FROM attempts a WHERE a.job_id = j.id \
     ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = ?1"
);

/// A job's attempts, oldest first.
const READ_ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE job_id = ?1 ORDER BY lease_token"
);

/// Every job, oldest first (`?1` is the state, always NULL here).
const LIST_ALL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE ?1 IS NULL ORDER BY seq LIMIT ?2"
);

/// Pending or failed jobs (`?1` says which), in the order they will run.
const LIST_WAITING: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_ready WHERE state IN ('pending', 'failed') \
     AND state = ?1 ORDER BY next_run_at, seq LIMIT ?2"
);

/// Running jobs, oldest first.
const LIST_PROCESSING: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_running WHERE state = 'processing' AND state = ?1 \
     ORDER BY seq LIMIT ?2"
);

/// The dead letter queue, oldest first.
const LIST_DEAD: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_dead WHERE state = 'dead' AND state = ?1 ORDER BY seq LIMIT ?2"
);

/// Cancelled jobs, oldest first.
const LIST_CANCELLED: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_cancelled WHERE state = 'cancelled' AND state = ?1 \
     ORDER BY seq LIMIT ?2"
);

/// The jobs in a state without an index of its own (completed), oldest first.
const LIST_IN_STATE: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state = ?1 ORDER BY seq LIMIT ?2"
);

// One count per state, each through its partial index (PostgreSQL counts them all
// at once, `COUNT_BY_STATE`); completed jobs are what the others leave of the total.
const COUNT_PENDING: &str = "SELECT count(*) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND state = 'pending'";

const COUNT_FAILED: &str = "SELECT count(*) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND state = 'failed'";

const COUNT_PROCESSING: &str =
    "SELECT count(*) FROM jobs INDEXED BY jobs_running WHERE state = 'processing'";

const COUNT_DEAD: &str = "SELECT count(*) FROM jobs INDEXED BY jobs_dead WHERE state = 'dead'";

const COUNT_CANCELLED: &str =
    "SELECT count(*) FROM jobs INDEXED BY jobs_cancelled WHERE state = 'cancelled'";

const COUNT_ALL: &str = "SELECT count(*) FROM jobs";

/// When the longest-waiting pending job became due.
const OLDEST_PENDING: &str = "SELECT min(next_run_at) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND state = 'pending'";

/// Adds `jobs`, created at `now`; a job without its own `max_retries` or
/// `timeout_ms` gets the setting in force when the transaction commits.
pub(super) fn enqueue(tx: &Transaction<'_>, now: i64, jobs: &[NewJob]) -> Result<i64> {
    // Read in the enqueue transaction, so a job gets the settings in force when
    // it was committed.
    let defaults = if jobs
        .iter()
        .any(|j| j.max_retries.is_none() || j.timeout_ms.is_none())
    {
        let mut stmt = tx.prepare_cached(READ_ENQUEUE_DEFAULTS).map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?;
        let stored: BTreeMap<String, String> =
            rows.collect::<rusqlite::Result<_>>().map_err(db_error)?;
        Config::from_stored(&stored)
    } else {
        Config::default()
    };
    let default_timeout = defaults.job_timeout.map(millis);
    let mut stmt = tx.prepare_cached(INSERT_JOBS).map_err(db_error)?;
    for job in jobs {
        let max_retries = job.max_retries.unwrap_or(defaults.max_retries);
        let timeout_ms = job.timeout_ms.or(default_timeout);
        stmt.execute(params![
            job.id,
            job.command,
            job.cwd,
            max_retries,
            now,
            timeout_ms
        ])
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::DuplicateId(job.id.clone()),
            _ => db_error(e),
        })?;
    }
    Ok(now)
}

pub(super) fn job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    conn.query_row(READ_JOB, [id], |row| {
        let mut job = job_from_row(row)?;
        job.output_tail = row.get(JOB_COLUMN_COUNT)?;
        Ok(job)
    })
    .optional()
    .map_err(db_error)
}

pub(super) fn attempts(conn: &Connection, id: &str) -> Result<Vec<AttemptRecord>> {
    let mut stmt = conn.prepare_cached(READ_ATTEMPTS).map_err(db_error)?;
    let rows = stmt
        .query_map([id], |r| attempt_from_row(r, 0))
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

pub(super) fn list(
    conn: &Connection,
    state: Option<JobState>,
    limit: Option<usize>,
) -> Result<Vec<Job>> {
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    // Each state is read through its own partial index (see the schema).
    let sql = match state {
        None => LIST_ALL,
        Some(JobState::Pending | JobState::Failed) => LIST_WAITING,
        Some(JobState::Processing) => LIST_PROCESSING,
        Some(JobState::Dead) => LIST_DEAD,
        Some(JobState::Cancelled) => LIST_CANCELLED,
        Some(JobState::Completed) => LIST_IN_STATE,
    };
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = stmt
        .query_map(params![state.map(JobState::as_str), limit], job_from_row)
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Counts every state in one read transaction; completed jobs, which have no index,
/// are what the others leave of the total.
pub(super) fn counts(conn: &mut Connection) -> Result<Counts> {
    let now = now_ms();
    let tx = conn.transaction().map_err(db_error)?;
    let count = |sql: &str| -> Result<i64> {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_error)
    };
    let pending = count(COUNT_PENDING)?;
    let failed = count(COUNT_FAILED)?;
    let processing = count(COUNT_PROCESSING)?;
    let dead = count(COUNT_DEAD)?;
    let cancelled = count(COUNT_CANCELLED)?;
    let total = count(COUNT_ALL)?;
    let oldest_pending_at: Option<i64> = tx
        .prepare_cached(OLDEST_PENDING)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)?;
    let completed = total - pending - failed - processing - dead - cancelled;
    let by_state = [
        (JobState::Pending, pending),
        (JobState::Processing, processing),
        (JobState::Completed, completed),
        (JobState::Failed, failed),
        (JobState::Dead, dead),
        (JobState::Cancelled, cancelled),
    ]
    .into_iter()
    .collect();
    Ok(Counts {
        by_state,
        oldest_pending_at,
        now,
    })
}
