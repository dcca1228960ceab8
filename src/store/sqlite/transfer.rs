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
use crate::store::rows::{
    ATTEMPT_COLUMN_COUNT, JOB_COLUMN_COUNT, after_from_lines, attempt_columns, env_to_text,
    job_columns, qualified,
};
use crate::store::{Emit, JobRecord, RecordStream, Result, control};

/// Jobs (of state `?1`, or all) each followed by its attempts, one row per
/// attempt (or one without any), in job order. Built once: the column lists are
/// qualified with their table alias at run time.
pub(super) static EXPORT_JOBS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {}, (SELECT group_concat(after_id, char(10)) FROM (SELECT after_id \
         FROM job_dependencies d WHERE d.job_id = j.id ORDER BY after_id)) \
         FROM jobs j LEFT JOIN attempts a ON a.job_pos = j.pos \
         WHERE ?1 IS NULL OR j.state = ?1 ORDER BY j.seq, a.lease_token",
        qualified("j", job_columns!()),
        qualified("a", attempt_columns!()),
    )
});

/// Where [`EXPORT_JOBS`] puts the ids of the jobs a job runs after, one per line.
const AFTER_COLUMN: usize = JOB_COLUMN_COUNT + ATTEMPT_COLUMN_COUNT;

/// Sets an imported job's scheduling options, and whether it waits for its time
/// by the clock at import (`?7`).
const IMPORT_SCHEDULE: &str = "UPDATE jobs SET priority = ?2, queue = ?3, run_at = ?4, \
     unique_key = ?5, env = ?6, \
     scheduled = state IN ('pending', 'failed') AND next_run_at > ?7 WHERE id = ?1";

/// Records that imported job `?1` runs after job `?2`.
const IMPORT_DEPENDENCY: &str =
    "INSERT OR IGNORE INTO job_dependencies (job_id, after_id) VALUES (?1, ?2)";

/// Jobs named in `after` that the store does not hold.
const UNKNOWN_AFTER: &str = "SELECT DISTINCT after_id FROM job_dependencies d \
     WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.after_id) ORDER BY after_id";

/// Marks every job that others run after.
const MARK_DEPENDED_ON: &str = "UPDATE jobs SET has_dependents = 1 \
     WHERE has_dependents = 0 AND id IN (SELECT after_id FROM job_dependencies)";

/// Recounts what each pending job with `after` still waits for.
const RECOUNT_WAITING: &str = "UPDATE jobs SET blocked_by = (SELECT count(*) \
     FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
     WHERE d.job_id = jobs.id AND a.state <> 'completed') \
     WHERE state = 'pending' AND id IN (SELECT job_id FROM job_dependencies)";

/// Writes back one exported job, every column as it was, as number `?19` in
/// enqueue order (`seq`: the jobs of an import follow every job already here, in
/// the file's order); returns the `pos` its row gets, which keys its attempts.
const IMPORT_JOBS: &str = "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, \
     interruptions, created_at, updated_at, next_run_at, lease_token, \
     lease_expires_at, worker_id, started_at, finished_at, exit_code, last_error, timeout_ms, \
     seq) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
     ?16, ?17, ?18, ?19) RETURNING pos";

/// Writes back one exported attempt. An export carries the output's tail, not all
/// of it: the tail becomes the kept output, as for attempts from before version 2.
/// Keyed by the imported job's new `pos` (`?16`).
const IMPORT_ATTEMPTS: &str = "INSERT INTO attempts (job_id, lease_token, worker_id, started_at, \
     finished_at, outcome, exit_code, error, output_tail, output, output_total, host, pid, \
     signal, max_rss_kb, cpu_ms, job_pos) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CAST(?9 AS BLOB), ?10, ?11, ?12, ?13, ?14, \
     ?15, ?16)";

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
        let job = || {
            let mut job = job_from_row(row)?;
            let after: Option<String> = row.get(AFTER_COLUMN)?;
            job.after = after_from_lines(after.as_deref());
            Ok(job)
        };
        let flow = records.row(&id, job, attempt).map_err(db_error)?;
        if flow.is_break() {
            return Ok(());
        }
    }
    records.finish();
    Ok(())
}

pub(super) fn import(tx: &Transaction<'_>, now: i64, jobs: &[JobRecord]) -> Result<()> {
    // Imported attempts may be older than the metrics rollup's mark: count again.
    super::stats::forget_rollup(tx)?;
    let last_seq = super::completed::last_seq(tx)?;
    let mut insert_job = tx.prepare_cached(IMPORT_JOBS).map_err(db_error)?;
    let mut insert_attempt = tx.prepare_cached(IMPORT_ATTEMPTS).map_err(db_error)?;
    for (record, seq) in jobs.iter().zip(last_seq + 1..) {
        let j = &record.job;
        let pos: i64 = insert_job
            .query_row(
                params![
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
                    seq,
                ],
                |r| r.get(0),
            )
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
                    pos,
                ])
                .map_err(db_error)?;
        }
        tx.prepare_cached(IMPORT_SCHEDULE)
            .and_then(|mut s| {
                s.execute(params![
                    j.id,
                    j.priority,
                    j.queue,
                    j.run_at,
                    j.unique_key,
                    env_to_text(j.env.as_ref()),
                    now,
                ])
            })
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => control::unique_key_taken(&j.id, None),
                _ => db_error(e),
            })?;
        for after in &j.after {
            tx.prepare_cached(IMPORT_DEPENDENCY)
                .and_then(|mut s| s.execute([&j.id, after]))
                .map_err(db_error)?;
        }
    }
    if jobs.iter().any(|r| !r.job.after.is_empty()) {
        let unknown: Vec<String> = {
            let mut stmt = tx.prepare_cached(UNKNOWN_AFTER).map_err(db_error)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_error)?
        };
        if !unknown.is_empty() {
            return Err(StoreError::UnknownAfter(unknown));
        }
        tx.execute(MARK_DEPENDED_ON, []).map_err(db_error)?;
        tx.execute(RECOUNT_WAITING, []).map_err(db_error)?;
    }
    // The imported completed jobs that no recent attempt locates are counted in
    // completed_rollup (see `completed`).
    if jobs.iter().any(|r| r.job.state == JobState::Completed) {
        super::completed::roll_in_since(tx, last_seq)?;
    }
    Ok(())
}
