//! One worker round trip ([`Store::exchange`](crate::store::Store::exchange)) in one
//! transaction: record finished runs, reassign moved jobs, renew leases, store output
//! of running attempts, heartbeat and read stop and cancel requests, then claim.
//!
//! Invariants: the steps run in the same order as on SQLite; every write about a run
//! is fenced by its lease token and `state = 'processing'`, so a worker that lost its
//! lease cannot overwrite a newer result; a claim is one statement, where
//! `FOR UPDATE SKIP LOCKED` in a materialized CTE picks at most one job per idle
//! worker and the `UPDATE` marks exactly those `processing` under a new lease token
//! (and sets each run's deadline); each step is one statement, however many runs it
//! covers; a finished run's kept output replaces the chunks shipped while it ran, in
//! the same statement.

use std::collections::HashSet;
use std::time::Duration;

use postgres::{GenericClient, Transaction};

use super::listen::notify;
use super::{Db, Step, millis, output, schedule};
use crate::error::StoreError;
use crate::job::{AttemptOutcome, Job, JobState};
use crate::store::rows::{job_columns, job_from_row};
use crate::store::{Exchange, ExchangeReply, Finished, Lease, ProcessKey, StopRequest};

/// Marks the live workers of process (`$1` host, `$2` pid) as alive now.
const HEARTBEAT: &str = "UPDATE workers SET heartbeat_at = now_ms() \
    WHERE host = $1 AND pid = $2 AND ended_at IS NULL";

/// Milliseconds until the next waiting job is due (negative if one is overdue,
/// NULL if none waits).
/// Only jobs waiting for their time count: ready jobs left unclaimed (paused or
/// full queues) are not due at any time, and a change to their queue NOTIFYs.
const NEXT_DUE_IN: &str = "SELECT min(next_run_at) - now_ms() FROM jobs \
    WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled";

/// Applies each finished run's transition (arrays `$1`..`$21`, one element per run)
/// where the job is still `processing` under that lease (and, for runs flagged
/// `only_if_expired`, the lease expired), records the attempt with its kept output
/// and facts unless the run was released unstarted, deletes the run's output chunks,
/// and returns the `(id, lease_token, state, has_dependents)` of the jobs it changed. Attempts are
/// keyed by the job's `seq`, not its random id, so the rows of one round trip append
/// at the right edge of `attempts_pkey` (DECISIONS.md §17).
const RECORD_FINISHED: &str = "WITH f AS ( \
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
            $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::boolean[], \
            $10::text[], $11::text[], $12::text[], $13::text[], $14::bytea[], \
            $15::bigint[], $16::text[], $17::bigint[], $18::bigint[], $19::bigint[], \
            $20::bigint[], $21::boolean[]) \
        AS f(job_id, token, state, attempts, interruptions, run_after, exit_code, \
            last_error, only_if_expired, worker_id, outcome, error, output_tail, output, \
            output_total, host, pid, signal, max_rss_kb, cpu_ms, keeps_place) \
    ), done AS ( \
        UPDATE jobs j SET state = f.state, attempts = f.attempts, \
            interruptions = f.interruptions, next_run_at = CASE WHEN f.keeps_place \
                THEN j.next_run_at ELSE now_ms() + f.run_after END, \
            exit_code = f.exit_code, last_error = f.last_error, finished_at = now_ms(), \
            updated_at = now_ms(), lease_expires_at = NULL, deadline_at = NULL, \
            cancel_requested = false, scheduled = NOT f.keeps_place AND f.run_after > 0 \
        FROM f \
        WHERE j.id = f.job_id AND j.lease_token = f.token AND j.state = 'processing' \
            AND (NOT f.only_if_expired OR coalesce(j.lease_expires_at, 0) < now_ms()) \
        RETURNING j.id, j.seq, j.lease_token, j.started_at, j.state, j.has_dependents \
    ), recorded AS ( \
        INSERT INTO attempts (job_seq, job_id, lease_token, worker_id, started_at, \
            finished_at, outcome, exit_code, error, output_tail, output, output_total, \
            host, pid, signal, max_rss_kb, cpu_ms) \
        SELECT d.seq, d.id, d.lease_token, f.worker_id, d.started_at, now_ms(), f.outcome, \
            f.exit_code, f.error, f.output_tail, f.output, f.output_total, f.host, f.pid, \
            f.signal, f.max_rss_kb, f.cpu_ms \
        FROM done d JOIN f ON f.job_id = d.id AND f.token = d.lease_token \
        WHERE f.outcome <> 'released' \
        ON CONFLICT (job_seq, lease_token) DO UPDATE SET worker_id = excluded.worker_id, \
            started_at = excluded.started_at, finished_at = excluded.finished_at, \
            outcome = excluded.outcome, exit_code = excluded.exit_code, \
            error = excluded.error, output_tail = excluded.output_tail, \
            output = excluded.output, output_total = excluded.output_total, \
            host = excluded.host, pid = excluded.pid, signal = excluded.signal, \
            max_rss_kb = excluded.max_rss_kb, cpu_ms = excluded.cpu_ms \
    ), forgotten AS ( \
        DELETE FROM output_chunks c USING done d \
        WHERE c.job_id = d.id AND c.lease_token = d.lease_token \
    ) \
    SELECT id, lease_token, state, has_dependents FROM done";

/// Whether any queue has a concurrency limit: then a run's end may have made room
/// for a waiting job, and an [`Exchange::claim_if_freed`] round trip claims. Asked
/// only on that path, instead of the claim and `NEXT_DUE_IN` it saves, so the hot
/// `RECORD_FINISHED` stays as it was.
const ANY_LIMITED_QUEUE: &str =
    "SELECT EXISTS (SELECT 1 FROM queues WHERE concurrency IS NOT NULL)";

/// Sets the worker of each job (`$1` ids, `$2` tokens, `$3` workers) still running
/// under that lease.
const REASSIGN_WORKER: &str = "UPDATE jobs j SET worker_id = r.worker \
    FROM unnest($1::text[], $2::bigint[], $3::text[]) AS r(id, token, worker) \
    WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing'";

/// Extends by `$3` ms the lease of each job (`$1` ids, `$2` tokens) still running
/// under that lease; returns the renewed ones.
const RENEW_LEASES: &str = "UPDATE jobs j SET lease_expires_at = now_ms() + $3 \
    FROM unnest($1::text[], $2::bigint[]) AS r(id, token) \
    WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing' \
    RETURNING j.id, j.lease_token";

/// Claims up to `$1` due jobs in run order, one for each worker in `$3`, each under
/// a new lease of `$2` ms and with its run's deadline (none without a timeout);
/// returns the claimed jobs.
///
/// Run order: highest priority, then ready longest, then enqueue order; only the
/// queues in `$4` (NULL: all), none paused or already at its concurrency limit. A
/// pick may hold more of a limited queue's jobs than it has room for: `ranked`
/// keeps only as many as fit (the rest stay pending, unlocked at commit). The
/// running counts are exact because every claimer first locks the limited queues'
/// rows ([`READ_STOP_AND_CANCELS`]) and this statement's snapshot is taken after.
pub(super) const CLAIM_NEXT: &str = concat!(
    "WITH picked AS MATERIALIZED ( \
        SELECT seq, queue, priority, next_run_at FROM jobs \
        WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND NOT scheduled \
            AND ($4::text[] IS NULL OR queue = ANY($4)) \
            AND queue NOT IN (SELECT name FROM queues WHERE paused OR concurrency <= \
                (SELECT count(*) FROM jobs r WHERE r.state = 'processing' \
                 AND r.queue = queues.name)) \
        ORDER BY priority DESC, next_run_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED \
     ), ranked AS ( \
        SELECT p.seq, p.priority, p.next_run_at, row_number() OVER (PARTITION BY p.queue \
            ORDER BY p.priority DESC, p.next_run_at, p.seq) AS in_queue, \
            (SELECT q.concurrency - (SELECT count(*) FROM jobs r \
                WHERE r.state = 'processing' AND r.queue = q.name) \
             FROM queues q WHERE q.name = p.queue) AS room \
        FROM picked p \
     ), numbered AS ( \
        SELECT seq, row_number() OVER (ORDER BY priority DESC, next_run_at, seq) AS rn \
        FROM ranked WHERE room IS NULL OR in_queue <= room \
     ) \
     UPDATE jobs j SET state = 'processing', lease_token = j.lease_token + 1, \
        lease_expires_at = now_ms() + $2, worker_id = ($3::text[])[n.rn], \
        started_at = now_ms(), updated_at = now_ms(), \
        deadline_at = now_ms() + j.timeout_ms \
     FROM numbered n WHERE j.seq = n.seq \
     RETURNING ",
    job_columns!()
);

/// The strongest stop request of the live workers of process (`$1` host, `$2` pid).
const READ_STOP: &str = "SELECT coalesce(max(stop_requested), 0) FROM workers \
    WHERE host = $1 AND pid = $2 AND ended_at IS NULL";

/// [`READ_STOP`] and, when `$3`, [`READ_CANCELS`] in one statement, so asking for
/// cancels costs a worker round trip no extra trip to the server: the first row
/// (`id` NULL, which no job has) holds the stop request, each further row a
/// cancelled job's `(id, lease_token)`.
///
/// When `$4` (the round trip claims), it also moves the jobs whose time has come
/// to the ready index (what SQLite's `PROMOTE_DUE` does) and locks the rows of the
/// queues with a concurrency limit until the round trip commits, so that claims
/// of limited queues take turns and each counts the others' running jobs (the
/// claim is a later statement, with a later snapshot). Without limited queues
/// the lock takes nothing and costs nothing.
///
/// The last branch must read `limited` to the end without returning a row: a
/// `SELECT` CTE runs only as far as it is read, and a branch the planner can prove
/// empty (`WHERE false`) is never run, which once left the lock untaken
/// (`the_round_trip_holds_the_limited_queues_until_it_commits`). `promoted`
/// modifies data, so it runs whether it is read or not.
pub(super) const READ_STOP_AND_CANCELS: &str = "WITH limited AS ( \
        SELECT name FROM queues WHERE $4 AND concurrency IS NOT NULL ORDER BY name FOR UPDATE \
    ), promoted AS ( \
        UPDATE jobs SET scheduled = false WHERE $4 AND state IN ('pending', 'failed') \
            AND blocked_by = 0 AND scheduled AND next_run_at <= now_ms() RETURNING 1 \
    ) \
    SELECT NULL::text, coalesce(max(stop_requested), 0)::bigint \
    FROM workers WHERE host = $1 AND pid = $2 AND ended_at IS NULL \
    UNION ALL SELECT id, lease_token FROM jobs WHERE cancel_requested AND $3 \
    UNION ALL SELECT NULL::text, -1 FROM (SELECT count(*) AS n FROM limited) AS l \
        WHERE l.n < 0";

/// The running jobs a user cancelled, through the partial index `jobs_cancel`
/// that holds only them: asking on every round trip costs next to nothing.
const READ_CANCELS: &str = "SELECT id, lease_token FROM jobs WHERE cancel_requested";

/// The body of one worker round trip, in one transaction, in SQLite's order: record
/// finished runs, renew leases, heartbeat and read stop requests, then claim.
pub(super) fn exchange_in(
    db: &mut Db<'_, Transaction<'_>>,
    ex: &Exchange<'_>,
    channel: &str,
) -> Step<ExchangeReply> {
    let lease_ms = millis(ex.lease_timeout);
    let mut reply = ExchangeReply::default();
    let Recorded { requeued, freed } = record_finished(db, ex.finished, &mut reply.rejected)?;
    reassign(db, ex.reassign)?;
    reply.lost = renew(db, ex.renew, lease_ms)?;
    output::store_chunks(db, ex.output)?;
    if let Some(process) = ex.process {
        if ex.beat {
            db.execute(HEARTBEAT, &[&process.host, &process.pid])?;
        }
        let claiming = !ex.claim_for.is_empty();
        let rows = db.query(
            READ_STOP_AND_CANCELS,
            &[&process.host, &process.pid, &ex.check_cancels, &claiming],
        )?;
        for row in &rows {
            match row.try_get::<_, Option<String>>(0)? {
                None => reply.stop = StopRequest::from_code(row.try_get(1)?),
                Some(job_id) => reply.cancel.push(Lease {
                    job_id,
                    token: row.try_get(1)?,
                }),
            }
        }
    } else if ex.check_cancels {
        reply.cancel = read_cancels(db)?;
    }
    reply.claim_skipped = ex.claim_if_freed
        && !freed
        && !requeued
        && !ex.finished.is_empty()
        && !db
            .query_one(ANY_LIMITED_QUEUE, &[])?
            .try_get::<_, bool>(0)?;
    if !ex.claim_for.is_empty() && !reply.claim_skipped {
        if ex.process.is_none() {
            db.query(READ_STOP_AND_CANCELS, &[&"", &0i64, &false, &true])?;
        }
        reply.claimed = claim(db, ex.claim_for, lease_ms, ex.queues)?;
    }
    if reply.claimed.len() < ex.claim_for.len() && !reply.claim_skipped {
        let row = db.query_one(NEXT_DUE_IN, &[])?;
        let due: Option<i64> = row.try_get(0)?;
        reply.next_due_in = due.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }
    if requeued {
        // A recovered job is claimable at once: wake idle workers everywhere.
        notify(db, channel)?;
    }
    Ok(reply)
}

/// Records finished runs in one statement, each fenced like SQLite's
/// `record_finished`: only while the job is still `processing` under that lease (and,
/// for recovery, only once the lease expired). Runs not recorded go to `rejected`.
/// Returns what the recorded runs made claimable ([`Recorded`]).
fn record_finished(
    db: &mut Db<'_, Transaction<'_>>,
    finished: &[Finished],
    rejected: &mut Vec<Lease>,
) -> Step<Recorded> {
    if finished.is_empty() {
        return Ok(Recorded::default());
    }
    // A lease reported twice is recorded once; the copy is rejected, as the second
    // of two sequential writes would be.
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(finished.len());
    for f in finished {
        if seen.insert(&f.lease) {
            batch.push(f);
        } else {
            rejected.push(f.lease.clone());
        }
    }
    let ids: Vec<&str> = batch.iter().map(|f| f.lease.job_id.as_str()).collect();
    let tokens: Vec<i64> = batch.iter().map(|f| f.lease.token).collect();
    let states: Vec<&str> = batch.iter().map(|f| f.transition.state.as_str()).collect();
    let attempts: Vec<i64> = batch.iter().map(|f| f.transition.attempts).collect();
    let interruptions: Vec<i64> = batch.iter().map(|f| f.transition.interruptions).collect();
    let run_after: Vec<i64> = batch
        .iter()
        .map(|f| millis(f.transition.run_after))
        .collect();
    let exit_codes: Vec<Option<i64>> = batch.iter().map(|f| f.transition.exit_code).collect();
    let last_errors: Vec<Option<&str>> = batch
        .iter()
        .map(|f| f.transition.last_error.as_deref())
        .collect();
    let only_expired: Vec<bool> = batch.iter().map(|f| f.only_if_expired).collect();
    let keeps_place: Vec<bool> = batch.iter().map(|f| f.transition.keeps_place).collect();
    let workers: Vec<Option<&str>> = batch.iter().map(|f| f.worker_id.as_deref()).collect();
    let outcomes: Vec<&str> = batch.iter().map(|f| f.outcome.as_str()).collect();
    let errors: Vec<Option<&str>> = batch
        .iter()
        .map(|f| match f.outcome {
            AttemptOutcome::Succeeded => None,
            _ => f.transition.last_error.as_deref(),
        })
        .collect();
    let tails: Vec<Option<&str>> = batch.iter().map(|f| f.output_tail.as_deref()).collect();
    let outputs: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|f| f.output.as_ref().map(|k| k.bytes.as_slice()))
        .map(|bytes| bytes.filter(|b| !b.is_empty()))
        .collect();
    let totals: Vec<Option<i64>> = batch
        .iter()
        .map(|f| f.output.as_ref())
        .map(|k| k.map(|k| i64::try_from(k.total).unwrap_or(i64::MAX)))
        .collect();
    let hosts: Vec<Option<&str>> = batch.iter().map(|f| f.facts.host.as_deref()).collect();
    let pids: Vec<Option<i64>> = batch.iter().map(|f| f.facts.pid).collect();
    let signals: Vec<Option<i64>> = batch.iter().map(|f| f.facts.signal).collect();
    let rss: Vec<Option<i64>> = batch.iter().map(|f| f.facts.max_rss_kb).collect();
    let cpu: Vec<Option<i64>> = batch.iter().map(|f| f.facts.cpu_ms).collect();
    let rows = db.query(
        RECORD_FINISHED,
        &[
            &ids,
            &tokens,
            &states,
            &attempts,
            &interruptions,
            &run_after,
            &exit_codes,
            &last_errors,
            &only_expired,
            &workers,
            &outcomes,
            &errors,
            &tails,
            &outputs,
            &totals,
            &hosts,
            &pids,
            &signals,
            &rss,
            &cpu,
            &keeps_place,
        ],
    )?;
    let mut recorded = HashSet::new();
    let mut requeued = false;
    let mut freed = false;
    let mut settle = Vec::new();
    for row in &rows {
        let id: String = row.try_get(0)?;
        let state: JobState = row
            .try_get::<_, &str>(2)?
            .parse()
            .map_err(|e: crate::error::InputError| StoreError::unavailable(e.to_string()))?;
        requeued |= state == JobState::Pending;
        // What may be claimable now that was not: a retry, dependents, room in a
        // limited queue (`Exchange::claim_if_freed`).
        freed |= !matches!(
            state,
            JobState::Completed | JobState::Dead | JobState::Cancelled
        ) || row.try_get::<_, bool>(3)?;
        if row.try_get::<_, bool>(3)? {
            // Released dependents are new work for idle workers everywhere.
            requeued |= state == JobState::Completed;
            settle.push((id.clone(), state));
        }
        recorded.insert((id, row.try_get::<_, i64>(1)?));
    }
    for (id, state) in settle {
        schedule::settle(db, &id, state)?;
    }
    for f in batch {
        if !recorded.contains(&(f.lease.job_id.clone(), f.lease.token)) {
            rejected.push(f.lease.clone());
        }
    }
    Ok(Recorded { requeued, freed })
}

/// What [`record_finished`] changed for claimers.
#[derive(Default)]
struct Recorded {
    /// A recorded run put its job back to `pending` or released dependents: idle
    /// workers everywhere are woken.
    requeued: bool,
    /// A recorded run may have made work claimable: a retry or dependents
    /// (`Exchange::claim_if_freed`; limited queues are asked apart).
    freed: bool,
}

/// Records which worker runs a job that moved between slots of one process.
fn reassign(db: &mut Db<'_, Transaction<'_>>, moved: &[(Lease, String)]) -> Step<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moved.iter().map(|(l, _)| l.job_id.as_str()).collect();
    let tokens: Vec<i64> = moved.iter().map(|(l, _)| l.token).collect();
    let workers: Vec<&str> = moved.iter().map(|(_, w)| w.as_str()).collect();
    db.execute(REASSIGN_WORKER, &[&ids, &tokens, &workers])?;
    Ok(())
}

/// Renews the leases of running jobs in one statement; returns those that could not
/// be renewed because the job is no longer ours.
fn renew(db: &mut Db<'_, Transaction<'_>>, held: &[Lease], lease_ms: i64) -> Step<Vec<Lease>> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = held.iter().map(|l| l.job_id.as_str()).collect();
    let tokens: Vec<i64> = held.iter().map(|l| l.token).collect();
    let rows = db.query(RENEW_LEASES, &[&ids, &tokens, &lease_ms])?;
    let mut renewed = HashSet::new();
    for row in &rows {
        renewed.insert((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?));
    }
    Ok(held
        .iter()
        .filter(|l| !renewed.contains(&(l.job_id.clone(), l.token)))
        .cloned()
        .collect())
}

/// Claims up to one job per worker in `workers`, in one statement. The materialized
/// CTE is an optimisation fence: the planner cannot turn it into a join that locks
/// and updates more rows than the LIMIT. SKIP LOCKED lets concurrent claimers pass
/// each other's rows instead of queueing behind them. Each picked row is numbered so
/// it gets its own worker from the array.
fn claim(
    db: &mut Db<'_, Transaction<'_>>,
    workers: &[String],
    lease_ms: i64,
    queues: Option<&[String]>,
) -> Step<Vec<(String, Job)>> {
    let limit = i64::try_from(workers.len()).unwrap_or(i64::MAX);
    let rows = db.query(CLAIM_NEXT, &[&limit, &lease_ms, &workers, &queues])?;
    rows.iter()
        .map(|row| {
            let job = job_from_row(row)?;
            let worker = job.worker_id.clone().unwrap_or_default();
            Ok((worker, job))
        })
        .collect()
}

/// The strongest stop request addressed to a process's live workers.
pub(super) fn read_stop<C: GenericClient>(
    db: &mut Db<'_, C>,
    process: &ProcessKey,
) -> Step<StopRequest> {
    let row = db.query_one(READ_STOP, &[&process.host, &process.pid])?;
    Ok(StopRequest::from_code(row.try_get(0)?))
}

/// Every running job a user cancelled (usually none).
pub(super) fn read_cancels<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Vec<Lease>> {
    let rows = db.query(READ_CANCELS, &[])?;
    rows.iter()
        .map(|r| {
            Ok(Lease {
                job_id: r.try_get(0)?,
                token: r.try_get(1)?,
            })
        })
        .collect()
}
