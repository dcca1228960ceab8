//! The workers table: registering and ending workers, listing them, stop requests,
//! the running jobs that `recover` inspects, and what a worker holds after a lost
//! reply (`reconcile`).
//!
//! Invariants: a reused worker id starts over as a new worker (like SQLite's `INSERT
//! OR REPLACE`); a worker's state is derived in one place ([`WorkerState::derive`])
//! from what these queries read; stop requests only reach workers that are live
//! (not ended, heartbeat within the lease timeout) and only ever grow stronger.

use postgres::{GenericClient, Row, Transaction};

use super::listen::notify;
use super::{Db, Step, millis, read_settings};
use crate::config::Config;
use crate::store::rows::{job_columns, job_from_row};
use crate::store::{
    EndedLease, Lease, LeaseCheck, RunningJob, StopRequest, WorkerInfo, WorkerRow, WorkerState,
};

/// Registers workers (`$1` ids, `$2` hosts, `$3` pids, `$4` process start times);
/// a known id starts over.
const REGISTER_WORKERS: &str = "\
    INSERT INTO workers (id, host, pid, pid_start, started_at, heartbeat_at) \
    SELECT t.id, t.host, t.pid, t.pid_start, now_ms(), now_ms() \
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
    AS t(id, host, pid, pid_start) \
    ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
    pid_start = excluded.pid_start, started_at = excluded.started_at, \
    heartbeat_at = excluded.heartbeat_at, stop_requested = 0, ended_at = NULL, \
    end_state = NULL";

/// Marks the workers in `$1` that have not ended as ended in state `$2`.
const END_WORKERS: &str = "UPDATE workers SET ended_at = now_ms(), end_state = $2 \
    WHERE id = ANY($1) AND ended_at IS NULL";

/// Workers (all if `$2`, else those not ended) with the job each runs and whether its
/// heartbeat is older than `$1` ms; read by [`worker_from_row`].
const LIST_WORKERS: &str = "SELECT w.id, w.host, w.pid, w.pid_start, w.started_at, w.heartbeat_at, \
    w.stop_requested, w.end_state, \
    (SELECT j.id FROM jobs j WHERE j.worker_id = w.id AND j.state = 'processing' \
    LIMIT 1), w.heartbeat_at < now_ms() - $1 \
    FROM workers w WHERE $2 OR w.ended_at IS NULL ORDER BY w.started_at, w.id";

/// Raises the stop request to `$1` for live workers (heartbeat within `$2` ms), on
/// host `$3` or everywhere; returns their ids.
const REQUEST_STOP: &str = "UPDATE workers SET stop_requested = greatest(stop_requested, $1) \
    WHERE ended_at IS NULL AND heartbeat_at >= now_ms() - $2 \
    AND ($3::text IS NULL OR host = $3) RETURNING id";

/// Every `processing` job with whether its lease expired, the worker it is recorded
/// to and whether a user cancelled it; read by [`running_from_row`].
const LIST_RUNNING_JOBS: &str = "SELECT j.id, j.lease_token, j.attempts, j.interruptions, \
    coalesce(j.lease_expires_at, 0) < now_ms(), w.id, w.host, w.pid, w.pid_start, \
    j.cancel_requested \
    FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id \
    WHERE j.state = 'processing'";

pub(super) fn register_workers(
    db: &mut Db<'_, Transaction<'_>>,
    workers: &[WorkerInfo],
) -> Step<()> {
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    let hosts: Vec<&str> = workers.iter().map(|w| w.host.as_str()).collect();
    let pids: Vec<i64> = workers.iter().map(|w| w.pid).collect();
    let starts: Vec<i64> = workers.iter().map(|w| w.pid_start).collect();
    // Like SQLite's INSERT OR REPLACE: a reused id starts over as a new worker.
    db.execute(REGISTER_WORKERS, &[&ids, &hosts, &pids, &starts])?;
    Ok(())
}

pub(super) fn end_workers(
    db: &mut Db<'_, Transaction<'_>>,
    ids: &[String],
    state: WorkerState,
) -> Step<()> {
    db.execute(END_WORKERS, &[&ids, &state.as_str()])?;
    Ok(())
}

pub(super) fn list_workers<C: GenericClient>(
    db: &mut Db<'_, C>,
    include_ended: bool,
) -> Step<Vec<WorkerRow>> {
    let lease = millis(Config::from_stored(&read_settings(db)?).lease_timeout);
    // Ended workers are never live: leave them in the database unless asked.
    let rows = db.query(LIST_WORKERS, &[&lease, &include_ended])?;
    let all = rows.iter().map(worker_from_row).collect::<Step<Vec<_>>>()?;
    Ok(all
        .into_iter()
        .filter(|w| include_ended || w.state.is_live())
        .collect())
}

/// The body of `request_stop`, in one transaction: returns the ids of the workers
/// asked, and wakes idle workers on every host if there are any.
pub(super) fn request_stop_in(
    db: &mut Db<'_, Transaction<'_>>,
    host: Option<&str>,
    stop: StopRequest,
    channel: &str,
) -> Step<Vec<String>> {
    let lease = millis(Config::from_stored(&read_settings(db)?).lease_timeout);
    let rows = db.query(REQUEST_STOP, &[&stop.code(), &lease, &host])?;
    let ids = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<Vec<String>, _>>()?;
    if !ids.is_empty() {
        // Idle workers on every host notice at once instead of at their next poll.
        notify(db, channel)?;
    }
    Ok(ids)
}

/// The jobs in `processing` leased to any of the workers `$1` (SQLite's
/// `HELD_BY_WORKER` asks per worker).
const HELD_BY_WORKERS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE worker_id = ANY($1) AND state = 'processing'"
);

/// Whether job `$1` ended under lease `$2` (it still carries that token but is no
/// longer `processing`), with the outcome and pid of the attempt recorded under it.
const ENDED_UNDER_LEASE: &str = "SELECT a.outcome, a.pid FROM jobs j \
    LEFT JOIN attempts a ON a.job_seq = j.seq AND a.lease_token = j.lease_token \
    WHERE j.id = $1 AND j.lease_token = $2 AND j.state <> 'processing'";

/// What the store holds for `workers` and which of `leases` ended under their token
/// (see [`crate::store::Store::reconcile`]).
pub(super) fn reconcile<C: GenericClient>(
    db: &mut Db<'_, C>,
    workers: &[String],
    leases: &[Lease],
) -> Step<LeaseCheck> {
    let mut check = LeaseCheck::default();
    for row in db.query(HELD_BY_WORKERS, &[&workers])? {
        check.held.push(job_from_row(&row)?);
    }
    for lease in leases {
        if let Some(row) = db.query_opt(ENDED_UNDER_LEASE, &[&lease.job_id, &lease.token])? {
            let outcome: Option<String> = row.try_get(0)?;
            check.ended.push(EndedLease {
                lease: lease.clone(),
                outcome: outcome.and_then(|o| o.parse().ok()),
                pid: row.try_get(1)?,
            });
        }
    }
    Ok(check)
}

pub(super) fn running_jobs<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Vec<RunningJob>> {
    let rows = db.query(LIST_RUNNING_JOBS, &[])?;
    rows.iter().map(running_from_row).collect()
}

fn worker_from_row(r: &Row) -> Step<WorkerRow> {
    let job: Option<String> = r.try_get(8)?;
    let end_state: Option<String> = r.try_get(7)?;
    let stop = StopRequest::from_code(r.try_get(6)?);
    let stale: bool = r.try_get(9)?;
    Ok(WorkerRow {
        info: WorkerInfo {
            id: r.try_get(0)?,
            host: r.try_get(1)?,
            pid: r.try_get(2)?,
            pid_start: r.try_get(3)?,
        },
        state: WorkerState::derive(end_state.as_deref(), stale, stop, job.is_some()),
        job,
        started_at: r.try_get(4)?,
        heartbeat_at: r.try_get(5)?,
    })
}

fn running_from_row(r: &Row) -> Step<RunningJob> {
    let worker_id: Option<String> = r.try_get(5)?;
    let worker = match worker_id {
        Some(id) => Some(WorkerInfo {
            id,
            host: r.try_get(6)?,
            pid: r.try_get(7)?,
            pid_start: r.try_get(8)?,
        }),
        None => None,
    };
    Ok(RunningJob {
        cancel_requested: r.try_get(9)?,
        lease: Lease {
            job_id: r.try_get(0)?,
            token: r.try_get(1)?,
        },
        attempts: r.try_get(2)?,
        interruptions: r.try_get(3)?,
        lease_expired: r.try_get(4)?,
        worker,
    })
}
