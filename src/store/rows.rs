//! How a row of `jobs` and of `attempts` reads, once for both backends.
//!
//! The column lists ([`job_columns!`], [`attempt_columns!`]) and the order
//! [`job_from_row`] and [`attempt_from_row`] decode them in are defined here and
//! nowhere else; a backend only says how to read one column of its own row type
//! ([`Columns`]). So a column added to one backend's statements cannot be read at
//! another position by the other.

use std::collections::BTreeMap;

use crate::error::InputError;
use crate::job::{Job, JobState};
use crate::store::{AttemptFacts, AttemptRecord};

/// The columns of `jobs` that [`job_from_row`] reads, in its order. A macro so that
/// backends can build `&'static str` statements with `concat!` (PostgreSQL's
/// statement cache is keyed by them).
macro_rules! job_columns {
    () => {
        "id, command, cwd, state, attempts, max_retries, interruptions, created_at, \
         updated_at, next_run_at, lease_token, lease_expires_at, worker_id, started_at, \
         finished_at, exit_code, last_error, timeout_ms, deadline_at, cancel_requested, \
         priority, queue, run_at, unique_key, env, blocked_by"
    };
}
pub(crate) use job_columns;

/// How many columns [`job_columns!`] names: what follows them in a row starts here.
pub(crate) const JOB_COLUMN_COUNT: usize = 26;

/// How many columns [`attempt_columns!`] names.
pub(crate) const ATTEMPT_COLUMN_COUNT: usize = 14;

/// The columns of `attempts` that [`attempt_from_row`] reads, in its order.
macro_rules! attempt_columns {
    () => {
        "lease_token, worker_id, started_at, finished_at, outcome, exit_code, error, \
         output_tail, host, pid, signal, max_rss_kb, cpu_ms, output_total"
    };
}
pub(crate) use attempt_columns;

/// `t.a, t.b, ...` for a column list `a, b, ...`: the same columns read through the
/// table alias `alias` in a join.
pub(crate) fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One column of a backend's row, by position. `Error` is the backend's own, so a
/// decoder can run inside the driver's row callbacks.
pub(crate) trait Columns {
    type Error;
    fn int(&self, at: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, at: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, at: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, at: usize) -> Result<Option<String>, Self::Error>;
    fn flag(&self, at: usize) -> Result<bool, Self::Error>;
    /// Column `at` holds a value queuectl does not know (a state or outcome written
    /// by a newer release, or by hand).
    fn invalid(&self, at: usize, problem: InputError) -> Self::Error;
}

/// The job whose [`job_columns!`] start the row.
pub(crate) fn job_from_row<R: Columns>(r: &R) -> Result<Job, R::Error> {
    let state: JobState = r.text(3)?.parse().map_err(|e| r.invalid(3, e))?;
    Ok(Job {
        id: r.text(0)?,
        command: r.text(1)?,
        cwd: r.text(2)?,
        state,
        attempts: r.int(4)?,
        max_retries: r.int(5)?,
        interruptions: r.int(6)?,
        created_at: r.int(7)?,
        updated_at: r.int(8)?,
        next_run_at: r.int(9)?,
        lease_token: r.int(10)?,
        lease_expires_at: r.opt_int(11)?,
        worker_id: r.opt_text(12)?,
        started_at: r.opt_int(13)?,
        finished_at: r.opt_int(14)?,
        exit_code: r.opt_int(15)?,
        last_error: r.opt_text(16)?,
        timeout_ms: r.opt_int(17)?,
        deadline_at: r.opt_int(18)?,
        cancel_requested: r.flag(19)?,
        priority: r.int(20)?,
        queue: r.text(21)?,
        run_at: r.opt_int(22)?,
        unique_key: r.opt_text(23)?,
        env: match r.opt_text(24)? {
            None => None,
            Some(text) => Some(env_from_text(&text).map_err(|e| r.invalid(24, e))?),
        },
        blocked_by: r.int(25)?,
        after: Vec::new(),
        output_tail: None,
    })
}

/// A job's environment as stored (a JSON object of strings).
pub(crate) fn env_from_text(text: &str) -> Result<BTreeMap<String, String>, InputError> {
    serde_json::from_str(text).map_err(|e| {
        InputError::Invalid(format!(
            "a job's stored env is not a JSON object of strings: {e}"
        ))
    })
}

/// A job's environment as stored: `None` when it has none.
pub(crate) fn env_to_text(env: Option<&BTreeMap<String, String>>) -> Option<String> {
    env.filter(|e| !e.is_empty())
        .and_then(|e| serde_json::to_string(e).ok())
}

/// The attempt whose [`attempt_columns!`] start at column `at`.
pub(crate) fn attempt_from_row<R: Columns>(r: &R, at: usize) -> Result<AttemptRecord, R::Error> {
    let outcome = r.text(at + 4)?.parse().map_err(|e| r.invalid(at + 4, e))?;
    Ok(AttemptRecord {
        lease_token: r.int(at)?,
        worker_id: r.opt_text(at + 1)?,
        started_at: r.opt_int(at + 2)?,
        finished_at: r.int(at + 3)?,
        outcome,
        exit_code: r.opt_int(at + 5)?,
        error: r.opt_text(at + 6)?,
        output_tail: r.opt_text(at + 7)?,
        facts: AttemptFacts {
            host: r.opt_text(at + 8)?,
            pid: r.opt_int(at + 9)?,
            signal: r.opt_int(at + 10)?,
            max_rss_kb: r.opt_int(at + 11)?,
            cpu_ms: r.opt_int(at + 12)?,
        },
        output_total: r.opt_int(at + 13)?,
    })
}

/// The ids a job runs after, as exports read them: one per line (ids hold no
/// control characters), `None` for none.
pub(crate) fn after_from_lines(text: Option<&str>) -> Vec<String> {
    text.map_or_else(Vec::new, |t| t.split('\n').map(str::to_owned).collect())
}
