//! Jobs outside the worker round trip: enqueueing, reading one, listing and counting.
//!
//! A batch takes `seq`s (enqueue order) in the order given; its rows are inserted,
//! and so take their `pos` (the rowid, where the row lives), in the order given
//! too, unless its priorities are mixed: then in the order it will run
//! ([`BatchLayout`]), so that claims and finishes of such a backlog touch few
//! pages (DECISIONS.md §24). Of two jobs of a batch with one unique key, the
//! first given wins whatever the insert order.
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
use crate::job::options::admission;
use crate::job::{Job, JobState, NewJob};
use crate::store::layout::BatchLayout;
use crate::store::listing::{Dialect, listing_sql};
use crate::store::rows::{JOB_COLUMN_COUNT, attempt_columns, job_columns};
use crate::store::rows::{after_from_lines, env_to_text};
use crate::store::{AttemptRecord, Counts, Enqueued, JobListing, JobOrder, Result};

/// The stored defaults for `max_retries` and `timeout_ms`, for jobs enqueued without
/// their own.
const READ_ENQUEUE_DEFAULTS: &str =
    "SELECT key, value FROM settings WHERE key IN ('max-retries', 'job-timeout')";

/// The ids a listed job runs after, one per line (NULL: none), as the column after
/// [`job_columns!`].
macro_rules! after_ids {
    () => {
        "(SELECT group_concat(after_id, char(10)) FROM (SELECT after_id \
         FROM job_dependencies d WHERE d.job_id = jobs.id ORDER BY after_id))"
    };
}

/// Adds one new job, number `?17` in enqueue order, after the last row (`pos`):
/// `pending`, or `cancelled` (`?15`) when a job it runs after already ended
/// without completing (`?16` says why).
const INSERT_JOBS: &str = "INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, \
     updated_at, next_run_at, timeout_ms, priority, queue, run_at, unique_key, env, blocked_by, \
     scheduled, finished_at, last_error, seq) \
     VALUES (?1, ?2, ?3, ?15, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
     CASE WHEN ?15 = 'cancelled' THEN ?5 END, ?16, ?17)";

/// The `seq` the next job takes: one past the newest (`jobs_seq`'s last entry).
const NEXT_SEQ: &str = "SELECT coalesce(max(seq), 0) + 1 FROM jobs";

/// The unfinished job holding unique key `?1`, if any.
const FIND_UNIQUE: &str = "SELECT id FROM jobs INDEXED BY jobs_unique \
     WHERE unique_key = ?1 AND unique_key IS NOT NULL \
     AND state IN ('pending', 'processing', 'failed')";

/// The state of a job named in `after`.
const READ_STATE: &str = "SELECT state FROM jobs WHERE id = ?1";

/// Records that job `?1` runs after job `?2`.
const INSERT_DEPENDENCY: &str = "INSERT INTO job_dependencies (job_id, after_id) VALUES (?1, ?2)";

/// Marks a job that others run after, so that its end looks for them.
const MARK_HAS_DEPENDENTS: &str = "UPDATE jobs SET has_dependents = 1 WHERE id = ?1";

/// The jobs one job runs after, by id.
const READ_AFTER: &str =
    "SELECT after_id FROM job_dependencies WHERE job_id = ?1 ORDER BY after_id";

/// One job by id, followed by the output tail of its latest attempt.
pub(super) const READ_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", (SELECT output_tail FROM attempts a WHERE a.job_pos = j.pos \
     ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = ?1"
);

/// A job's attempts, oldest first: attempts are keyed by the job's `pos`.
pub(super) const READ_ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE job_pos = (SELECT pos FROM jobs WHERE id = ?1) ORDER BY lease_token"
);

/// Every job, oldest first (`?1` is the state, always NULL here).
const LIST_ALL: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs WHERE ?1 IS NULL ORDER BY seq LIMIT ?2"
);

/// Ready pending or failed jobs (`?1` says which), in the order they will run.
const LIST_WAITING: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_ready WHERE state IN ('pending', 'failed') \
     AND blocked_by = 0 AND scheduled = 0 AND state = ?1 \
     ORDER BY priority DESC, next_run_at, seq LIMIT ?2"
);

/// Pending or failed jobs waiting for their time, by when it comes.
const LIST_SCHEDULED: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_scheduled WHERE state IN ('pending', 'failed') \
     AND blocked_by = 0 AND scheduled = 1 AND state = ?1 ORDER BY next_run_at, seq LIMIT ?2"
);

/// Pending jobs waiting for jobs they run after (`?1` is always `pending`).
const LIST_BLOCKED: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_blocked WHERE state = 'pending' AND blocked_by > 0 \
     AND state = ?1 ORDER BY seq LIMIT ?2"
);

/// Running jobs, oldest first.
const LIST_PROCESSING: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_running WHERE state = 'processing' AND state = ?1 \
     ORDER BY seq LIMIT ?2"
);

/// The dead letter queue, oldest first.
const LIST_DEAD: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_dead WHERE state = 'dead' AND state = ?1 ORDER BY seq LIMIT ?2"
);

/// Cancelled jobs, oldest first.
const LIST_CANCELLED: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs INDEXED BY jobs_cancelled WHERE state = 'cancelled' AND state = ?1 \
     ORDER BY seq LIMIT ?2"
);

/// The jobs in a state without an index of its own (completed), oldest first.
const LIST_IN_STATE: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs WHERE state = ?1 ORDER BY seq LIMIT ?2"
);

// One count per state, each through its partial indexes; completed jobs come from
// their rollup (`completed::by_queue`). Waiting jobs are split over jobs_ready, jobs_scheduled and jobs_blocked.
const COUNT_PENDING: &str = "SELECT (SELECT count(*) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 \
     AND state = 'pending') + (SELECT count(*) FROM jobs INDEXED BY jobs_scheduled \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 1 \
     AND state = 'pending') + (SELECT count(*) FROM jobs INDEXED BY jobs_blocked \
     WHERE state = 'pending' AND blocked_by > 0)";

const COUNT_FAILED: &str = "SELECT (SELECT count(*) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 \
     AND state = 'failed') + (SELECT count(*) FROM jobs INDEXED BY jobs_scheduled \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 1 \
     AND state = 'failed')";

const COUNT_PROCESSING: &str =
    "SELECT count(*) FROM jobs INDEXED BY jobs_running WHERE state = 'processing'";

const COUNT_DEAD: &str = "SELECT count(*) FROM jobs INDEXED BY jobs_dead WHERE state = 'dead'";

const COUNT_CANCELLED: &str =
    "SELECT count(*) FROM jobs INDEXED BY jobs_cancelled WHERE state = 'cancelled'";

/// When the longest-waiting ready pending job became due.
const OLDEST_PENDING: &str = "SELECT min(next_run_at) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 \
     AND state = 'pending'";

/// Adds `jobs`, created at `now`; a job without its own `max_retries` or
/// `timeout_ms` gets the setting in force when the transaction commits.
pub(super) fn enqueue(tx: &Transaction<'_>, now: i64, jobs: &[NewJob]) -> Result<Enqueued> {
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
    let layout = BatchLayout::of(jobs);
    let first_seq: i64 = tx
        .prepare_cached(NEXT_SEQ)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)?;
    // Input order: each inserted job takes the next `seq`, as a rowid would. Run
    // order: each job the `seq` of its input place (a skipped one leaves a gap).
    let mut next_seq = first_seq;
    let mut existing = vec![None; jobs.len()];
    let mut unknown = Vec::new();
    for &i in &layout.order {
        let job = &jobs[i];
        if layout.same_key_as[i].is_some() {
            continue;
        }
        if let Some(key) = &job.unique_key {
            let holder: Option<String> = tx
                .prepare_cached(FIND_UNIQUE)
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .map_err(db_error)?;
            if holder.is_some() {
                existing[i] = holder;
                continue;
            }
        }
        let mut waits = Vec::with_capacity(job.after.len());
        for after in &job.after {
            let state: Option<String> = tx
                .prepare_cached(READ_STATE)
                .and_then(|mut s| s.query_row([after], |r| r.get(0)).optional())
                .map_err(db_error)?;
            match state {
                None => unknown.push(after.clone()),
                // A state this release does not know counts as unfinished.
                Some(state) => {
                    waits.push((after.as_str(), state.parse().unwrap_or(JobState::Pending)))
                }
            }
        }
        let start = admission(job, now, &waits);
        let seq = if layout.reordered {
            first_seq + i64::try_from(i).unwrap_or(i64::MAX)
        } else {
            next_seq
        };
        next_seq += 1;
        tx.prepare_cached(INSERT_JOBS)
            .and_then(|mut s| {
                s.execute(params![
                    job.id,
                    job.command,
                    job.cwd,
                    job.max_retries.unwrap_or(defaults.max_retries),
                    now,
                    start.next_run_at,
                    job.timeout_ms.or(default_timeout),
                    job.priority,
                    job.queue,
                    start.run_at,
                    job.unique_key,
                    env_to_text(job.env.as_ref()),
                    start.blocked_by,
                    start.state == JobState::Pending && start.next_run_at > now,
                    start.state.as_str(),
                    start.last_error,
                    seq,
                ])
            })
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => StoreError::DuplicateId(job.id.clone()),
                _ => db_error(e),
            })?;
        for (after, _) in &waits {
            tx.prepare_cached(INSERT_DEPENDENCY)
                .and_then(|mut s| s.execute([job.id.as_str(), after]))
                .map_err(db_error)?;
            tx.prepare_cached(MARK_HAS_DEPENDENTS)
                .and_then(|mut s| s.execute([after]))
                .map_err(db_error)?;
        }
    }
    layout.share_keys(jobs, &mut existing);
    if !unknown.is_empty() {
        return Err(StoreError::UnknownAfter(unknown));
    }
    Ok(Enqueued {
        created_at: now,
        existing,
    })
}

/// The jobs `id` runs after, by id (the same order on every store).
pub(super) fn after(conn: &Connection, id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(READ_AFTER).map_err(db_error)?;
    let rows = stmt.query_map([id], |r| r.get(0)).map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

pub(super) fn job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    let found = conn
        .query_row(READ_JOB, [id], |row| {
            let mut job = job_from_row(row)?;
            job.output_tail = row.get(JOB_COLUMN_COUNT)?;
            Ok(job)
        })
        .optional()
        .map_err(db_error)?;
    match found {
        Some(mut job) => {
            job.after = after(conn, id)?;
            Ok(Some(job))
        }
        None => Ok(None),
    }
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
    let mut found = read_list(conn, sql, state, limit)?;
    // Waiting jobs, in the order they will run: ready ones, then those waiting for
    // their time, then those waiting for other jobs.
    if matches!(state, Some(JobState::Pending | JobState::Failed)) {
        for more in [LIST_SCHEDULED, LIST_BLOCKED] {
            let left = if limit < 0 {
                -1
            } else {
                limit - found.len() as i64
            };
            if left == 0 || (more == LIST_BLOCKED && state == Some(JobState::Failed)) {
                continue;
            }
            found.extend(read_list(conn, more, state, left)?);
        }
    }
    Ok(found)
}

/// How [`crate::store::listing`] reads on SQLite: waiting jobs in the order of
/// [`LIST_WAITING`], [`LIST_SCHEDULED`] and [`LIST_BLOCKED`] one after the other.
const DIALECT: Dialect = Dialect {
    columns: concat!(job_columns!(), ", ", after_ids!()),
    limit: "?1",
    queue: "?2",
    waiting_order: &[
        (
            "CASE WHEN blocked_by > 0 THEN 2 WHEN scheduled <> 0 THEN 1 ELSE 0 END",
            false,
        ),
        (
            "CASE WHEN blocked_by = 0 AND scheduled = 0 THEN priority ELSE 0 END",
            true,
        ),
        (
            "CASE WHEN blocked_by > 0 THEN 0 ELSE next_run_at END",
            false,
        ),
        ("seq", false),
    ],
};

/// `list` in any order, keeping either end; the natural order from the start is
/// [`list`]'s, through its per-state indexes.
pub(super) fn list_jobs(conn: &Connection, listing: &JobListing) -> Result<Vec<Job>> {
    if listing.order == JobOrder::Natural && !listing.from_end && listing.is_plain() {
        return list(conn, listing.state, listing.limit);
    }
    let limit = listing
        .limit
        .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let sql = listing_sql(listing, &DIALECT);
    let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
    let read = |row: &rusqlite::Row<'_>| {
        let mut job = job_from_row(row)?;
        let after: Option<String> = row.get(JOB_COLUMN_COUNT)?;
        job.after = after_from_lines(after.as_deref());
        Ok(job)
    };
    let rows = match &listing.queue {
        Some(queue) => stmt.query_map(params![limit, queue], read),
        None => stmt.query_map(params![limit], read),
    }
    .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

fn read_list(
    conn: &Connection,
    sql: &str,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = stmt
        .query_map(params![state.map(JobState::as_str), limit], |row| {
            let mut job = job_from_row(row)?;
            let after: Option<String> = row.get(JOB_COLUMN_COUNT)?;
            job.after = after_from_lines(after.as_deref());
            Ok(job)
        })
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Counts every state in one read transaction; completed jobs, which have no index,
/// come from their rollup.
/// Whether any job is `processing` or `failed` ([`crate::store::Store::jobs_in_flight`]).
pub(super) fn jobs_in_flight(conn: &Connection) -> Result<bool> {
    for sql in [COUNT_PROCESSING, COUNT_FAILED] {
        let n: i64 = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_error)?;
        if n > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

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
    let completed: i64 = super::completed::by_queue(&tx)?
        .into_iter()
        .map(|(_, n)| n)
        .sum();
    let oldest_pending_at: Option<i64> = tx
        .prepare_cached(OLDEST_PENDING)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)?;
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
