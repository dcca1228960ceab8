//! One worker round trip ([`exchange`]) in one transaction: record finished runs,
//! reassign moved jobs, renew leases, store output of running attempts, heartbeat
//! and read stop and cancel requests, then claim.
//!
//! Invariants kept here:
//! - Every write about a run is fenced: it applies only while the job is still
//!   `processing` under the lease token the caller holds.
//! - A claim is one `UPDATE ... RETURNING` ([`CLAIM_NEXT`]) inside the caller's
//!   `BEGIN IMMEDIATE` transaction, so no two connections can claim one job; it also
//!   sets the run's deadline, so a timeout costs the claim nothing extra.
//! - A finished run's kept output replaces the chunks shipped while it ran: the
//!   attempt row holds it and the chunks are deleted in the same transaction.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{db_error, job_from_row, millis, output, schedule};
use crate::job::{AttemptOutcome, JobState};
use crate::store::rows::job_columns;
use crate::store::{Exchange, ExchangeReply, Finished, Lease, Result, StopRequest};

/// Applies a finished run's transition if its lease still holds (and, for a
/// recovery, only if it has expired); returns when the run started and the job's
/// `pos` (its row's place), which keys its attempts. A job given back unstarted
/// (`?11`, `Transition::keeps_place`) keeps its `next_run_at`, so its place in line.
/// With [`RECORD_ATTEMPT`], what PostgreSQL's `RECORD_FINISHED` does in one statement.
const FINISH_RUN: &str = "UPDATE jobs SET state = ?3, attempts = ?4, interruptions = ?5, \
     next_run_at = CASE WHEN ?11 THEN next_run_at ELSE ?6 END, exit_code = ?7, \
     last_error = ?8, finished_at = ?9, updated_at = ?9, lease_expires_at = NULL, \
     deadline_at = NULL, cancel_requested = 0, scheduled = NOT ?11 AND ?6 > ?9 \
     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing' \
     AND (?10 = 0 OR coalesce(lease_expires_at, 0) < ?9) RETURNING started_at, has_dependents, pos";

/// Keeps the history of one finished run, with its kept output and what its
/// process did. Keyed by the job's `pos` (`?17`), not its random id, so the rows of
/// one round trip land together in the key's index, where their jobs' rows are
/// (DECISIONS.md §17, §24).
const RECORD_ATTEMPT: &str = "INSERT OR REPLACE INTO attempts (job_id, lease_token, worker_id, \
     started_at, finished_at, outcome, exit_code, error, output_tail, output, output_total, \
     host, pid, signal, max_rss_kb, cpu_ms, job_pos) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/// Records which worker of this process now runs a job.
const REASSIGN_WORKER: &str = "UPDATE jobs SET worker_id = ?3 \
     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing'";

/// Extends one held lease to `?3`.
const RENEW_LEASES: &str = "UPDATE jobs SET lease_expires_at = ?3 \
     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing'";

/// Records that a worker process is alive.
const HEARTBEAT: &str = "UPDATE workers SET heartbeat_at = ?3 \
     WHERE host = ?1 AND pid = ?2 AND ended_at IS NULL";

/// The strongest stop request made to a worker process.
///
/// The unary `+` keeps `host` and `pid` from being index candidates. Without it
/// SQLite marks the statement as depending on the bound values (an aggregate over
/// terms an automatic index could serve) and re-prepares it on every round trip,
/// which measured ~5 % of a noop worker's instructions; `workers` has no index on
/// them, so the plan is the same scan either way.
const READ_STOP: &str = "SELECT max(stop_requested) FROM workers \
     WHERE +host = ?1 AND +pid = ?2 AND ended_at IS NULL";

/// Leases the first ready job to worker `?3` until `?1 + ?2`; its run must end by
/// `?1 + timeout_ms` (no deadline without a timeout). Run order: highest priority,
/// then ready longest, then enqueue order (`seq`); the row is found by its `pos`,
/// which `jobs_ready` carries as its rowid. Only the queues in `?4` (NULL: all),
/// written `,a,b,` (queue names hold no commas), and none that is paused or already
/// runs its concurrency limit: one probe of the `queues` primary key per candidate
/// (`NOT EXISTS`; a `NOT IN` list would build a temporary table on every claim,
/// which measured 30% of a noop worker's instructions), and the write transaction
/// makes the running count exact.
const CLAIM_NEXT: &str = concat!(
    "UPDATE jobs SET state = 'processing', lease_token = lease_token + 1, \
     lease_expires_at = ?1 + ?2, worker_id = ?3, started_at = ?1, updated_at = ?1, \
     deadline_at = ?1 + timeout_ms \
     WHERE pos = (SELECT pos FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 \
     AND (?4 IS NULL OR instr(?4, ',' || queue || ',') > 0) \
     AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = jobs.queue \
     AND (q.paused <> 0 OR q.concurrency <= (SELECT count(*) FROM jobs r \
     INDEXED BY jobs_running WHERE r.state = 'processing' AND r.queue = q.name))) \
     ORDER BY priority DESC, next_run_at, seq LIMIT 1) RETURNING ",
    job_columns!()
);

/// Moves the jobs whose time has come from jobs_scheduled to jobs_ready.
const PROMOTE_DUE: &str = "UPDATE jobs INDEXED BY jobs_scheduled SET scheduled = 0 \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 1 \
     AND next_run_at <= ?1";

/// The running jobs a user cancelled: the partial index `jobs_cancel` holds only
/// them, so asking on every round trip costs next to nothing.
const READ_CANCELS: &str = "SELECT id, lease_token FROM jobs INDEXED BY jobs_cancel \
     WHERE cancel_requested <> 0";

/// When the next job waiting for its time becomes due, by the store's clock; the
/// round trip subtracts `now` (PostgreSQL's `NEXT_DUE_IN` subtracts its own clock).
/// Ready jobs left unclaimed (paused or full queues) are not due at any time: a
/// change to their queue wakes the workers.
const NEXT_DUE: &str = "SELECT min(next_run_at) FROM jobs INDEXED BY jobs_scheduled \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 1";

/// One worker round trip, inside the caller's transaction (`Immediate` whenever
/// it writes). Also returns whether it made work for other workers (a run put back
/// to `pending`, or dependents released), which rings the doorbell after commit as
/// PostgreSQL's round trip NOTIFYs.
pub(super) fn exchange(
    tx: &Transaction<'_>,
    now: i64,
    ex: &Exchange<'_>,
) -> Result<(ExchangeReply, bool)> {
    let lease = millis(ex.lease_timeout);
    let mut reply = ExchangeReply::default();
    let mut requeued = false;
    let chunks = !ex.finished.is_empty() && output::any_chunks(tx)?;
    for finished in ex.finished {
        match record_finished(tx, now, finished, chunks)? {
            Some(made_work) => requeued |= made_work,
            None => reply.rejected.push(finished.lease.clone()),
        }
    }
    for (lease, worker) in ex.reassign {
        tx.prepare_cached(REASSIGN_WORKER)
            .and_then(|mut s| s.execute(params![lease.job_id, lease.token, worker]))
            .map_err(db_error)?;
    }
    for held in ex.renew {
        let renewed = tx
            .prepare_cached(RENEW_LEASES)
            .and_then(|mut s| s.execute(params![held.job_id, held.token, now + lease]))
            .map_err(db_error)?;
        if renewed == 0 {
            reply.lost.push(held.clone());
        }
    }
    for chunk in ex.output {
        output::store_chunk(tx, chunk)?;
    }
    if let Some(process) = ex.process {
        if ex.beat {
            tx.prepare_cached(HEARTBEAT)
                .and_then(|mut s| s.execute(params![process.host, process.pid, now]))
                .map_err(db_error)?;
        }
        let stop: Option<i64> = tx
            .prepare_cached(READ_STOP)
            .and_then(|mut s| s.query_row(params![process.host, process.pid], |r| r.get(0)))
            .map_err(db_error)?;
        reply.stop = StopRequest::from_code(stop.unwrap_or(0));
    }
    if ex.check_cancels {
        let mut stmt = tx.prepare_cached(READ_CANCELS).map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Lease {
                    job_id: r.get(0)?,
                    token: r.get(1)?,
                })
            })
            .map_err(db_error)?;
        reply.cancel = rows.collect::<rusqlite::Result<_>>().map_err(db_error)?;
    }
    if !ex.claim_for.is_empty() {
        tx.prepare_cached(PROMOTE_DUE)
            .and_then(|mut s| s.execute([now]))
            .map_err(db_error)?;
    }
    let queues = ex.queues.map(|q| format!(",{},", q.join(",")));
    for worker in ex.claim_for {
        let job = tx
            .prepare_cached(CLAIM_NEXT)
            .and_then(|mut s| {
                s.query_row(params![now, lease, worker, queues], job_from_row)
                    .optional()
            })
            .map_err(db_error)?;
        match job {
            Some(job) => reply.claimed.push((worker.clone(), job)),
            None => break,
        }
    }
    if reply.claimed.len() < ex.claim_for.len() {
        let next: Option<i64> = tx
            .prepare_cached(NEXT_DUE)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_error)?;
        reply.next_due_in =
            next.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
    }
    Ok((reply, requeued))
}

/// Applies one finished run if its lease still holds: `None` if it did not, else
/// whether the run made work for other workers (its job back to `pending`, or its
/// dependents released by its completion).
/// `chunks`: whether any shipped output may be waiting to be replaced.
fn record_finished(
    tx: &Transaction<'_>,
    now: i64,
    f: &Finished,
    chunks: bool,
) -> Result<Option<bool>> {
    let t = &f.transition;
    let finished: Option<(Option<i64>, bool, i64)> = tx
        .prepare_cached(FINISH_RUN)
        .and_then(|mut s| {
            s.query_row(
                params![
                    f.lease.job_id,
                    f.lease.token,
                    t.state.as_str(),
                    t.attempts,
                    t.interruptions,
                    now + millis(t.run_after),
                    t.exit_code,
                    t.last_error,
                    now,
                    f.only_if_expired,
                    t.keeps_place,
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .map_err(db_error)?;
    let Some((started_at, has_dependents, pos)) = finished else {
        return Ok(None);
    };
    let made_work =
        t.state == JobState::Pending || has_dependents && t.state == JobState::Completed;
    if has_dependents {
        schedule::settle(tx, now, &f.lease.job_id, t.state)?;
    }
    if chunks {
        output::forget_chunks(tx, &f.lease)?;
    }
    if f.outcome == AttemptOutcome::Released {
        return Ok(Some(made_work));
    }
    let kept = f.output.as_ref();
    let facts = &f.facts;
    tx.prepare_cached(RECORD_ATTEMPT)
        .and_then(|mut s| {
            s.execute(params![
                f.lease.job_id,
                f.lease.token,
                f.worker_id,
                started_at,
                now,
                f.outcome.as_str(),
                t.exit_code,
                if f.outcome == AttemptOutcome::Succeeded {
                    None
                } else {
                    t.last_error.as_deref()
                },
                f.output_tail,
                kept.map(|k| k.bytes.as_slice()).filter(|b| !b.is_empty()),
                kept.map(|k| i64::try_from(k.total).unwrap_or(i64::MAX)),
                facts.host,
                facts.pid,
                facts.signal,
                facts.max_rss_kb,
                facts.cpu_ms,
                pos,
            ])
        })
        .map_err(db_error)?;
    Ok(Some(made_work))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenFor, QueueChange, Store};

    /// The claim stays one read of `jobs_ready` in index order, with priorities,
    /// delays, a paused queue, a concurrency limit and a queue filter in play: no
    /// scan of the table, no sort, no temporary table.
    #[test]
    fn the_claim_reads_jobs_ready_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = super::super::SqliteStore::open(
            &dir.path().join("q.db"),
            OpenFor::Command,
            crate::store::IfMissing::Create,
        )
        .expect("store");
        store
            .set_queue("paused", QueueChange::Pause)
            .expect("pause");
        store
            .set_queue("limited", QueueChange::Concurrency(Some(1)))
            .expect("limit");
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {CLAIM_NEXT}"))
            .expect("explain");
        let plan: Vec<String> = stmt
            .query_map(params![0, 1000, "w", ",a,b,"], |r| r.get(3))
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        let text = plan.join("\n");
        assert!(text.contains("INDEX jobs_ready"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "{text}");
        assert!(
            !plan
                .iter()
                .any(|l| l.starts_with("SCAN jobs") && !l.contains("INDEX")),
            "{text}"
        );
    }
}
