//! The worker rows: registering and ending workers, listing them with the job each
//! runs, and asking them to stop; and the running jobs with the workers that hold
//! them, which recovery reads; and what a worker holds after a lost reply
//! ([`reconcile`]).
//!
//! A worker's state is derived ([`WorkerState::derive`]) from what its row says and
//! whether its heartbeat is older than one lease timeout; it is never stored.

use rusqlite::{Connection, Transaction, params};

use super::db_error;
use crate::store::rows::{job_columns, job_from_row};
use crate::store::{
    EndedLease, Lease, LeaseCheck, Result, RunningJob, StopRequest, WorkerInfo, WorkerRow,
    WorkerState,
};

/// Adds a worker that starts now; a reused id starts over as a new worker.
const REGISTER_WORKERS: &str = "INSERT OR REPLACE INTO workers (id, host, pid, pid_start, \
     started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)";

/// Marks a worker ended, once.
const END_WORKERS: &str = "UPDATE workers SET ended_at = ?2, end_state = ?3 \
     WHERE id = ?1 AND ended_at IS NULL";

/// Every worker, oldest first, with the longest-running job it holds.
const LIST_WORKERS: &str = "SELECT w.id, w.host, w.pid, w.pid_start, w.started_at, \
     w.heartbeat_at, w.stop_requested, w.end_state, \
     (SELECT j.id FROM jobs j INDEXED BY jobs_running \
     WHERE j.worker_id = w.id AND j.state = 'processing' \
     ORDER BY j.started_at LIMIT 1) \
     FROM workers w ORDER BY w.started_at, w.id";

/// Raises the stop request of the live workers (of one host, if `?3` is given);
/// never lowers one already made.
const REQUEST_STOP: &str = "UPDATE workers SET stop_requested = max(stop_requested, ?1) \
     WHERE ended_at IS NULL AND heartbeat_at >= ?2 AND (?3 IS NULL OR host = ?3) \
     RETURNING id";

/// Every running job, with whether its lease has expired, the worker holding it and
/// whether a user cancelled it.
const LIST_RUNNING_JOBS: &str = "SELECT j.id, j.lease_token, j.attempts, j.interruptions, \
     coalesce(j.lease_expires_at, 0) < ?1, w.id, w.host, w.pid, w.pid_start, \
     j.cancel_requested \
     FROM jobs j INDEXED BY jobs_running LEFT JOIN workers w ON w.id = j.worker_id \
     WHERE j.state = 'processing'";

/// The jobs in `processing` leased to worker `?1` (PostgreSQL's `HELD_BY_WORKERS`
/// asks for all of a process's workers at once).
const HELD_BY_WORKER: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_running WHERE worker_id = ?1 AND state = 'processing'"
);

/// Whether job `?1` ended under lease `?2` (it still carries that token but is no
/// longer `processing`), with the outcome and pid of the attempt recorded under it.
const ENDED_UNDER_LEASE: &str = "SELECT a.outcome, a.pid FROM jobs j \
     LEFT JOIN attempts a ON a.job_pos = j.pos AND a.lease_token = j.lease_token \
     WHERE j.id = ?1 AND j.lease_token = ?2 AND j.state <> 'processing'";

/// Deletes the rows of workers that ended before `?1`.
const FORGET_ENDED_WORKERS: &str = "DELETE FROM workers WHERE ended_at < ?1";

pub(super) fn register(tx: &Transaction<'_>, now: i64, workers: &[WorkerInfo]) -> Result<()> {
    let mut stmt = tx.prepare_cached(REGISTER_WORKERS).map_err(db_error)?;
    for w in workers {
        stmt.execute(params![w.id, w.host, w.pid, w.pid_start, now])
            .map_err(db_error)?;
    }
    Ok(())
}

pub(super) fn end(
    tx: &Transaction<'_>,
    now: i64,
    ids: &[String],
    state: WorkerState,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(END_WORKERS).map_err(db_error)?;
    for id in ids {
        stmt.execute(params![id, now, state.as_str()])
            .map_err(db_error)?;
    }
    Ok(())
}

/// The workers, each stale if its last heartbeat came before `stale_before`; ended
/// ones only if `include_ended`.
pub(super) fn list(
    conn: &Connection,
    stale_before: i64,
    include_ended: bool,
) -> Result<Vec<WorkerRow>> {
    let mut stmt = conn.prepare_cached(LIST_WORKERS).map_err(db_error)?;
    let rows = stmt
        .query_map([], |r| {
            let job: Option<String> = r.get(8)?;
            let end_state: Option<String> = r.get(7)?;
            let heartbeat_at: i64 = r.get(5)?;
            let stop = StopRequest::from_code(r.get(6)?);
            Ok(WorkerRow {
                info: WorkerInfo {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    pid_start: r.get(3)?,
                },
                state: WorkerState::derive(
                    end_state.as_deref(),
                    heartbeat_at < stale_before,
                    stop,
                    job.is_some(),
                ),
                job,
                started_at: r.get(4)?,
                heartbeat_at,
            })
        })
        .map_err(db_error)?;
    let all: Vec<WorkerRow> = rows.collect::<rusqlite::Result<_>>().map_err(db_error)?;
    Ok(all
        .into_iter()
        .filter(|w| include_ended || w.state.is_live())
        .collect())
}

/// Asks the workers with a heartbeat since `alive_since` (of `host`, or all) to
/// stop; returns their ids.
pub(super) fn request_stop(
    tx: &Transaction<'_>,
    alive_since: i64,
    host: Option<&str>,
    stop: StopRequest,
) -> Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(REQUEST_STOP).map_err(db_error)?;
    let rows = stmt
        .query_map(params![stop.code(), alive_since, host], |r| r.get(0))
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Every running job as recovery sees it at `now`.
pub(super) fn running_jobs(conn: &Connection, now: i64) -> Result<Vec<RunningJob>> {
    let mut stmt = conn.prepare_cached(LIST_RUNNING_JOBS).map_err(db_error)?;
    let rows = stmt
        .query_map([now], |r| {
            let worker_id: Option<String> = r.get(5)?;
            let worker = match worker_id {
                Some(id) => Some(WorkerInfo {
                    id,
                    host: r.get(6)?,
                    pid: r.get(7)?,
                    pid_start: r.get(8)?,
                }),
                None => None,
            };
            Ok(RunningJob {
                cancel_requested: r.get(9)?,
                lease: Lease {
                    job_id: r.get(0)?,
                    token: r.get(1)?,
                },
                attempts: r.get(2)?,
                interruptions: r.get(3)?,
                lease_expired: r.get(4)?,
                worker,
            })
        })
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Deletes the rows of workers that ended before `ended_before`; returns how many.
pub(super) fn forget_ended(tx: &Transaction<'_>, ended_before: i64) -> Result<u64> {
    let gone = tx
        .prepare_cached(FORGET_ENDED_WORKERS)
        .and_then(|mut s| s.execute([ended_before]))
        .map_err(db_error)?;
    Ok(gone as u64)
}

/// What the store holds for `workers` and which of `leases` ended under their token
/// (see [`crate::store::Store::reconcile`]).
pub(super) fn reconcile(
    conn: &Connection,
    workers: &[String],
    leases: &[Lease],
) -> Result<LeaseCheck> {
    let mut check = LeaseCheck::default();
    let mut held = conn.prepare_cached(HELD_BY_WORKER).map_err(db_error)?;
    for worker in workers {
        let jobs = held
            .query_map([worker], |r| job_from_row(r))
            .map_err(db_error)?;
        for job in jobs {
            check.held.push(job.map_err(db_error)?);
        }
    }
    let mut ended = conn.prepare_cached(ENDED_UNDER_LEASE).map_err(db_error)?;
    for lease in leases {
        let mut rows = ended
            .query(params![lease.job_id, lease.token])
            .map_err(db_error)?;
        if let Some(row) = rows.next().map_err(db_error)? {
            let outcome: Option<String> = row.get(0).map_err(db_error)?;
            check.ended.push(EndedLease {
                lease: lease.clone(),
                outcome: outcome.and_then(|o| o.parse().ok()),
                pid: row.get(1).map_err(db_error)?,
            });
        }
    }
    Ok(check)
}
