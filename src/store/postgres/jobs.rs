//! The jobs table outside a worker's round trip: enqueue, reading jobs and their
//! attempts, listing and counting.
//!
//! Invariants: a batch of jobs is inserted in the order given (`seq` follows it), in
//! array-sized chunks of [`ENQUEUE_CHUNK`], so 100k jobs are a few statements, not
//! 100k round trips; a duplicate id fails the whole batch with that id's name; waiting
//! jobs are listed in the order they will run, as on SQLite.

use postgres::{GenericClient, Transaction};

use super::listen::notify;
use super::{Db, Step, driver_error, duplicate_id, is_unique_violation, millis, read_settings};
use crate::config::Config;
use crate::error::StoreError;
use crate::job::{Job, JobState, NewJob};
use crate::store::rows::{
    JOB_COLUMN_COUNT, attempt_columns, attempt_from_row, job_columns, job_from_row,
};
use crate::store::{AttemptRecord, Counts};

/// Jobs per INSERT statement when enqueuing (and importing): large batches go in
/// array-sized chunks, so 100k jobs are a few statements, not 100k round trips.
pub(super) const ENQUEUE_CHUNK: usize = 5000;

/// Inserts `pending` jobs (`$1` ids, `$2` commands, `$3` directories, `$4` retry
/// limits, `$5` timeouts) in array order; returns the database time used and how
/// many went in.
const INSERT_JOBS: &str = "WITH new AS ( \
        INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, updated_at, \
            next_run_at, timeout_ms) \
        SELECT t.id, t.command, t.cwd, 'pending', t.max_retries, now_ms(), now_ms(), \
            now_ms(), t.timeout_ms \
        FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
            WITH ORDINALITY AS t(id, command, cwd, max_retries, timeout_ms, ord) \
        ORDER BY t.ord \
        RETURNING 1 \
    ) SELECT now_ms(), count(*) FROM new";

/// The database's clock, for an enqueue of no jobs.
const READ_NOW: &str = "SELECT now_ms()";

/// Job `$1`, followed by the output tail of its latest attempt.
const READ_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", (SELECT output_tail FROM attempts a WHERE a.job_id = j.id \
     ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = $1"
);

/// The attempts of job `$1`, oldest first.
const READ_ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE job_id = $1 ORDER BY lease_token"
);

/// Up to `$2` jobs waiting in state `$1` (`pending` or `failed`), in the order they
/// will run.
const LIST_WAITING: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state IN ('pending', 'failed') AND state = $1 \
     ORDER BY next_run_at, seq LIMIT $2"
);

/// Up to `$2` jobs in state `$1`, in enqueue order.
const LIST_IN_STATE: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state = $1 ORDER BY seq LIMIT $2"
);

/// Up to `$1` jobs, in enqueue order.
const LIST_ALL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs ORDER BY seq LIMIT $1"
);

/// The database's clock and when the longest-waiting pending job became due.
const READ_NOW_AND_OLDEST_PENDING: &str =
    "SELECT now_ms(), (SELECT min(next_run_at) FROM jobs WHERE state = 'pending')";

/// How many jobs are in each state (states without jobs are absent).
const COUNT_BY_STATE: &str = "SELECT state, count(*) FROM jobs GROUP BY state";

/// The body of `enqueue`, in one transaction: inserts every chunk, then wakes idle
/// workers. Returns the database time used as the jobs' `created_at`.
pub(super) fn enqueue_in(
    db: &mut Db<'_, Transaction<'_>>,
    jobs: &[NewJob],
    channel: &str,
) -> Step<i64> {
    let defaults = Config::from_stored(&read_settings(db)?);
    let mut now = None;
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        now = Some(insert_jobs(db, chunk, &defaults)?);
    }
    let now = match now {
        Some(now) => now,
        None => return Ok(db.query_one(READ_NOW, &[])?.try_get(0)?),
    };
    notify(db, channel)?;
    Ok(now)
}

/// Inserts one chunk of jobs in one statement, in the given order (`seq` follows it);
/// a job without its own retry limit or timeout gets the one in `defaults`. Returns
/// the database time used as their `created_at`.
fn insert_jobs(db: &mut Db<'_, Transaction<'_>>, jobs: &[NewJob], defaults: &Config) -> Step<i64> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let commands: Vec<&str> = jobs.iter().map(|j| j.command.as_str()).collect();
    let cwds: Vec<&str> = jobs.iter().map(|j| j.cwd.as_str()).collect();
    let retries: Vec<i64> = jobs
        .iter()
        .map(|j| j.max_retries.unwrap_or(defaults.max_retries))
        .collect();
    let default_timeout = defaults.job_timeout.map(millis);
    let timeouts: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.timeout_ms.or(default_timeout))
        .collect();
    let result = db.query_one(INSERT_JOBS, &[&ids, &commands, &cwds, &retries, &timeouts]);
    match result {
        Ok(row) => Ok(row.try_get(0)?),
        Err(e) if is_unique_violation(&e) => {
            let id = driver_error(&e)
                .and_then(duplicate_id)
                .unwrap_or_else(|| ids.first().copied().unwrap_or_default().to_owned());
            Err(StoreError::DuplicateId(id))
        }
        Err(e) => Err(e),
    }
}

/// A job with the output tail of its latest attempt, if it exists.
pub(super) fn read_job<C: GenericClient>(db: &mut Db<'_, C>, id: &str) -> Step<Option<Job>> {
    let row = db.query_opt(READ_JOB, &[&id])?;
    let Some(row) = row else { return Ok(None) };
    let mut job = job_from_row(&row)?;
    job.output_tail = row.try_get(JOB_COLUMN_COUNT)?;
    Ok(Some(job))
}

pub(super) fn read_attempts<C: GenericClient>(
    db: &mut Db<'_, C>,
    id: &str,
) -> Step<Vec<AttemptRecord>> {
    let rows = db.query(READ_ATTEMPTS, &[&id])?;
    rows.iter().map(|r| attempt_from_row(r, 0)).collect()
}

pub(super) fn list_jobs<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: Option<JobState>,
    limit: Option<i64>,
) -> Step<Vec<Job>> {
    let rows = match state {
        // Waiting jobs are listed in the order they will run, as on SQLite.
        Some(state @ (JobState::Pending | JobState::Failed)) => {
            db.query(LIST_WAITING, &[&state.as_str(), &limit])?
        }
        Some(state) => db.query(LIST_IN_STATE, &[&state.as_str(), &limit])?,
        None => db.query(LIST_ALL, &[&limit])?,
    };
    rows.iter().map(job_from_row).collect()
}

pub(super) fn count_jobs<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Counts> {
    let row = db.query_one(READ_NOW_AND_OLDEST_PENDING, &[])?;
    let mut counts = Counts {
        now: row.try_get(0)?,
        oldest_pending_at: row.try_get(1)?,
        ..Counts::default()
    };
    for row in db.query(COUNT_BY_STATE, &[])? {
        let state: String = row.try_get(0)?;
        if let Ok(state) = state.parse::<JobState>() {
            counts.by_state.insert(state, row.try_get(1)?);
        }
    }
    Ok(counts)
}
