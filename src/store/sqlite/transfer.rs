//! Export and import: jobs with their attempts, streamed out of one consistent
//! snapshot and written back in one transaction.
//!
//! Import refuses a job whose id exists already ([`StoreError::DuplicateId`]), and
//! since it runs in one transaction, a refused import leaves the store unchanged.

use std::sync::LazyLock;

use rusqlite::{Connection, ErrorCode, Transaction, params};

use super::{attempt_from_row, db_error, job_from_row};
use crate::error::StoreError;
use crate::job::JobState;
use crate::store::rows::{JOB_COLUMN_COUNT, attempt_columns, job_columns, qualified};
use crate::store::{Emit, JobRecord, RecordStream, Result};

/// Jobs (of state `?1`, or all) each followed by its attempts, one row per
/// attempt (or one without any), in job order. Built once: the column lists are
/// qualified with their table alias at run time.
static EXPORT_JOBS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} \
         FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id \
         WHERE ?1 IS NULL OR j.state = ?1 ORDER BY j.seq, a.lease_token",
        qualified("j", job_columns!()),
        qualified("a", attempt_columns!()),
    )
});

/// Writes back one exported job, every column as it was.
const IMPORT_JOBS: &str = "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, \
     interruptions, created_at, updated_at, next_run_at, lease_token, \
     lease_expires_at, worker_id, started_at, finished_at, exit_code, last_error, timeout_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
     ?16, ?17, ?18)";

/// Writes back one exported attempt. An export carries the output's tail, not all
/// of it: the tail becomes the kept output, as for attempts from before version 2.
const IMPORT_ATTEMPTS: &str = "INSERT INTO attempts (job_id, lease_token, worker_id, started_at, \
     finished_at, outcome, exit_code, error, output_tail, output, output_total, host, pid, \
     signal, max_rss_kb, cpu_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CAST(?9 AS BLOB), ?10, ?11, ?12, ?13, ?14, \
     ?15)";

/// Streams the jobs (of `state`, or all) with their attempts to `emit`, until it
/// asks to stop.
pub(super) fn export(conn: &Connection, state: Option<JobState>, emit: Emit<'_>) -> Result<()> {
    // One statement: one consistent snapshot of jobs and their attempts.
    let mut stmt = conn.prepare_cached(&EXPORT_JOBS).map_err(db_error)?;
    let mut rows = stmt
        .query([state.map(JobState::as_str)])
        .map_err(db_error)?;
    let mut records = RecordStream::new(emit);
    while let Some(row) = rows.next().map_err(db_error)? {
        let id: String = row.get(0).map_err(db_error)?;
        let attempt = || match row.get::<_, Option<i64>>(JOB_COLUMN_COUNT)? {
            Some(_) => attempt_from_row(row, JOB_COLUMN_COUNT).map(Some),
            None => Ok(None),
        };
        let flow = records
            .row(&id, || job_from_row(row), attempt)
            .map_err(db_error)?;
        if flow.is_break() {
            return Ok(());
        }
    }
    records.finish();
    Ok(())
}

pub(super) fn import(tx: &Transaction<'_>, jobs: &[JobRecord]) -> Result<()> {
    let mut insert_job = tx.prepare_cached(IMPORT_JOBS).map_err(db_error)?;
    let mut insert_attempt = tx.prepare_cached(IMPORT_ATTEMPTS).map_err(db_error)?;
    for record in jobs {
        let j = &record.job;
        insert_job
            .execute(params![
                j.id,
                j.command,
                j.cwd,
                j.state.as_str(),
                j.attempts,
                j.max_retries,
                j.interruptions,
                j.created_at,
                j.updated_at,
                j.next_run_at,
                j.lease_token,
                j.lease_expires_at,
                j.worker_id,
                j.started_at,
                j.finished_at,
                j.exit_code,
                j.last_error,
                j.timeout_ms,
            ])
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => StoreError::DuplicateId(j.id.clone()),
                _ => db_error(e),
            })?;
        for a in &record.attempts {
            insert_attempt
                .execute(params![
                    j.id,
                    a.lease_token,
                    a.worker_id,
                    a.started_at,
                    a.finished_at,
                    a.outcome.as_str(),
                    a.exit_code,
                    a.error,
                    a.output_tail,
                    a.output_total,
                    a.facts.host,
                    a.facts.pid,
                    a.facts.signal,
                    a.facts.max_rss_kb,
                    a.facts.cpu_ms,
                ])
                .map_err(db_error)?;
        }
    }
    Ok(())
}
