//! The worker rows: registering and ending workers, listing them with the job each
//! runs, and asking them to stop.
//!
//! A worker's state is derived ([`WorkerState::derive`]) from what its row says and
//! whether its heartbeat is older than one lease timeout; it is never stored.

use rusqlite::{Connection, Transaction, params};

use super::db_error;
use crate::store::{Result, StopRequest, WorkerInfo, WorkerRow, WorkerState};

/// Adds a worker that starts now; a reused id starts over as a new worker.
const REGISTER_WORKER: &str = "INSERT OR REPLACE INTO workers (id, host, pid, pid_start, \
     started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)";

/// Marks a worker ended, once.
const END_WORKER: &str = "UPDATE workers SET ended_at = ?2, end_state = ?3 \
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

pub(super) fn register(tx: &Transaction<'_>, now: i64, workers: &[WorkerInfo]) -> Result<()> {
    let mut stmt = tx.prepare_cached(REGISTER_WORKER).map_err(db_error)?;
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
    let mut stmt = tx.prepare_cached(END_WORKER).map_err(db_error)?;
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
