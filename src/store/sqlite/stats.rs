//! `stats` and `metrics` on SQLite (issue 13): windowed counts over the attempts
//! and jobs that finished lately, the backlog, bounded samples for percentiles, and
//! the rollup of the attempt history (see [`crate::store::stats`]).
//!
//! Invariants: every read names the index it walks, so its cost grows with the
//! window or the backlog, never with the whole history: `attempts_finished` for
//! windows, the partial indexes of waiting, running, dead and cancelled jobs,
//! `jobs_queue` to find the queues, and the rollup of completed jobs
//! ([`super::completed`]) for those. The rollup moves forward only inside a
//! write transaction that first moves the mark (`ROLL_MARK` matches the old mark),
//! so two processes never add the same attempts twice.

use std::sync::OnceLock;

use rusqlite::{Connection, Transaction, params};

use super::db_error;
use crate::store::Result;
use crate::store::stats::{
    self, BucketCount, MetricsRaw, QueueCounts, SAMPLE_LIMIT, StatsRaw, StatsRequest, add_jobs,
    note_oldest, queue_entry,
};

/// Per queue, over the attempts that finished since `min(?1, ?2 - 15 min)`: those
/// in the window `?1` by outcome, those of the last 1, 5 and 15 minutes before
/// `?2`, and the longest in the window. Only queue `?3` if given.
const ATTEMPT_COUNTS: &str = "SELECT j.queue, \
     coalesce(sum(a.outcome = 'succeeded' AND a.finished_at >= ?1), 0), \
     coalesce(sum(a.outcome IN ('failed', 'timed_out') AND a.finished_at >= ?1), 0), \
     coalesce(sum(a.finished_at >= ?2 - 60000), 0), \
     coalesce(sum(a.finished_at >= ?2 - 300000), 0), \
     coalesce(sum(a.finished_at >= ?2 - 900000), 0), \
     max(CASE WHEN a.finished_at >= ?1 THEN max(0, a.finished_at - a.started_at) END) \
     FROM attempts a INDEXED BY attempts_finished JOIN jobs j ON j.pos = a.job_pos \
     WHERE a.finished_at >= min(?1, ?2 - 900000) AND (?3 IS NULL OR j.queue = ?3) \
     GROUP BY j.queue";

/// Dead jobs that ended since `?1`, per queue (only `?2` if given).
const DEAD_SINCE: &str = "SELECT queue, count(*) FROM jobs INDEXED BY jobs_dead \
     WHERE state = 'dead' AND finished_at >= ?1 AND (?2 IS NULL OR queue = ?2) GROUP BY queue";

/// Cancelled jobs that ended since `?1`, per queue (only `?2` if given).
const CANCELLED_SINCE: &str = "SELECT queue, count(*) FROM jobs INDEXED BY jobs_cancelled \
     WHERE state = 'cancelled' AND finished_at >= ?1 AND (?2 IS NULL OR queue = ?2) \
     GROUP BY queue";

/// Claimable jobs per queue and state, and since when the oldest has been.
const READY_BY_QUEUE: &str = "SELECT queue, state, count(*), min(next_run_at) \
     FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 \
     AND (?1 IS NULL OR queue = ?1) GROUP BY queue, state";

/// Claimable jobs of queue `?1` by state, and since when the oldest has been: no
/// `GROUP BY`, whose sort of a large backlog cost twice the scan.
const READY_IN_QUEUE: &str = "SELECT coalesce(sum(state = 'pending'), 0), \
     coalesce(sum(state = 'failed'), 0), min(next_run_at) FROM jobs INDEXED BY jobs_ready \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0 AND queue = ?1";

/// Jobs waiting for their time per queue and state: those whose time has come by
/// `?2` (claimable; a worker moves them to jobs_ready on its next round trip), the
/// others, and the oldest due.
const SCHEDULED_BY_QUEUE: &str = "SELECT queue, state, \
     coalesce(sum(next_run_at <= ?2), 0), coalesce(sum(next_run_at > ?2), 0), \
     min(CASE WHEN next_run_at <= ?2 THEN next_run_at END) \
     FROM jobs INDEXED BY jobs_scheduled \
     WHERE scheduled = 1 AND state IN ('pending', 'failed') AND blocked_by = 0 \
     AND (?1 IS NULL OR queue = ?1) GROUP BY queue, state";

/// Jobs waiting for the jobs they run after, per queue.
const BLOCKED_BY_QUEUE: &str = "SELECT queue, state, count(*) FROM jobs INDEXED BY jobs_blocked \
     WHERE blocked_by > 0 AND state = 'pending' AND (?1 IS NULL OR queue = ?1) \
     GROUP BY queue, state";

/// Running jobs per queue.
const RUNNING_BY_QUEUE: &str = "SELECT queue, count(*) FROM jobs INDEXED BY jobs_running \
     WHERE state = 'processing' GROUP BY queue";

/// Dead jobs per queue.
const DEAD_BY_QUEUE: &str =
    "SELECT queue, count(*) FROM jobs INDEXED BY jobs_dead WHERE state = 'dead' GROUP BY queue";

/// Cancelled jobs per queue.
const CANCELLED_BY_QUEUE: &str = "SELECT queue, count(*) FROM jobs INDEXED BY jobs_cancelled \
     WHERE state = 'cancelled' GROUP BY queue";

/// Every queue that has jobs, in order: one probe of `jobs_queue` per queue (a
/// skip scan), however many jobs each has.
const QUEUES_WITH_JOBS: &str = "WITH RECURSIVE q(name) AS (\
     SELECT min(queue) FROM jobs INDEXED BY jobs_queue \
     UNION ALL SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_queue WHERE queue > q.name) \
     FROM q WHERE q.name IS NOT NULL) SELECT name FROM q WHERE name IS NOT NULL";

/// The attempts of `a` that are their job's first, of a job that ran after no
/// other (whose readiness the store does not keep), as a condition.
macro_rules! first_attempt {
    () => {
        "a.started_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.job_pos = a.job_pos \
         AND b.lease_token < a.lease_token) \
         AND NOT EXISTS (SELECT 1 FROM job_dependencies d WHERE d.job_id = a.job_id)"
    };
}

/// A first attempt's pickup delay: from when its job became claimable (created,
/// or its `run_at`) to when a worker took it.
macro_rules! pickup_ms {
    () => {
        "max(0, a.started_at - max(j.created_at, coalesce(j.run_at, j.created_at)))"
    };
}

/// The newest attempts that finished since `?1` (with a start), at most `?3`: each
/// one's queue, duration, and pickup delay if it is a first attempt (else NULL).
const SAMPLE: &str = concat!(
    "SELECT j.queue, max(0, a.finished_at - a.started_at), CASE WHEN ",
    first_attempt!(),
    " THEN ",
    pickup_ms!(),
    " END FROM attempts a INDEXED BY attempts_finished JOIN jobs j ON j.pos = a.job_pos \
     WHERE a.finished_at >= ?1 AND a.started_at IS NOT NULL AND (?2 IS NULL OR j.queue = ?2) \
     ORDER BY a.finished_at DESC LIMIT ?3"
);

/// Where the rollup stands.
const READ_ROLLED: &str = "SELECT until FROM stats_rolled";

/// The rollup.
const READ_ROLLUP: &str = "SELECT kind, queue, outcome, bucket, attempts, sum_ms FROM stats_rollup";

/// Moves the mark from `?1` to `?2`, unless another process moved it first.
const ROLL_MARK: &str = "UPDATE stats_rolled SET until = ?2 WHERE until = ?1";

/// Forgets the rollup (after an import, whose attempts may be older than the mark).
const FORGET_ROLLUP: &str =
    "DELETE FROM stats_rollup; UPDATE stats_rolled SET until = 0 WHERE until <> 0";

/// Attempts that finished in `[?1, ?2)` per queue, outcome and duration bucket
/// (kind 'duration'), then first attempts' pickup delays per queue and bucket
/// (kind 'pickup'): the rows the rollup adds up.
fn attempts_between() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let duration = "max(0, a.finished_at - a.started_at)";
        format!(
            "SELECT 'duration', j.queue, a.outcome, coalesce({}, -1) AS bucket, count(*), \
             coalesce(sum({duration}), 0) \
             FROM attempts a INDEXED BY attempts_finished JOIN jobs j ON j.pos = a.job_pos \
             WHERE a.finished_at >= ?1 AND a.finished_at < ?2 GROUP BY j.queue, a.outcome, bucket \
             UNION ALL \
             SELECT 'pickup', j.queue, '', {} AS bucket, count(*), coalesce(sum({pickup}), 0) \
             FROM attempts a INDEXED BY attempts_finished JOIN jobs j ON j.pos = a.job_pos \
             WHERE a.finished_at >= ?1 AND a.finished_at < ?2 AND {} GROUP BY j.queue, bucket",
            stats::bucket_case(duration),
            stats::bucket_case(pickup_ms!()),
            first_attempt!(),
            pickup = pickup_ms!(),
        )
    })
}

/// [`attempts_between`] added into the rollup.
fn roll_up() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO stats_rollup (kind, queue, outcome, bucket, attempts, sum_ms) \
             SELECT * FROM ({}) WHERE true \
             ON CONFLICT (kind, queue, outcome, bucket) DO UPDATE SET \
             attempts = attempts + excluded.attempts, sum_ms = sum_ms + excluded.sum_ms",
            attempts_between()
        )
    })
}

/// The numbers of `stats`, read in one transaction at `now`.
pub(super) fn stats(tx: &Transaction<'_>, now: i64, request: &StatsRequest) -> Result<StatsRaw> {
    let since = now - crate::store::millis(request.window);
    let queue = request.queue.as_deref();
    let mut raw = StatsRaw {
        now,
        ..StatsRaw::default()
    };
    let rows = &mut raw.queues;
    let mut stmt = tx.prepare_cached(ATTEMPT_COUNTS).map_err(db_error)?;
    let mut found = stmt.query(params![since, now, queue]).map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let q: String = r.get(0).map_err(db_error)?;
        let e = queue_entry(rows, &q);
        e.completed = r.get(1).map_err(db_error)?;
        e.failed_attempts = r.get(2).map_err(db_error)?;
        e.finished_1m = r.get(3).map_err(db_error)?;
        e.finished_5m = r.get(4).map_err(db_error)?;
        e.finished_15m = r.get(5).map_err(db_error)?;
        e.duration_max_ms = r.get(6).map_err(db_error)?;
    }
    for (sql, dead) in [(DEAD_SINCE, true), (CANCELLED_SINCE, false)] {
        for (q, n) in pairs(tx, sql, params![since, queue])? {
            let e = queue_entry(rows, &q);
            if dead {
                e.dead = n;
            } else {
                e.cancelled = n;
            }
        }
    }
    backlog(tx, now, queue, rows)?;
    rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    let limit = SAMPLE_LIMIT as i64;
    let mut stmt = tx.prepare_cached(SAMPLE).map_err(db_error)?;
    let mut found = stmt.query(params![since, queue, limit]).map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let q: String = r.get(0).map_err(db_error)?;
        if let Some(pickup) = r.get::<_, Option<i64>>(2).map_err(db_error)? {
            raw.pickups.push((q.clone(), pickup));
        }
        raw.durations.push((q, r.get(1).map_err(db_error)?));
    }
    Ok(raw)
}

/// Adds the waiting jobs of every queue (or `queue`) to `rows`.
fn backlog(
    tx: &Connection,
    now: i64,
    queue: Option<&str>,
    rows: &mut Vec<QueueCounts>,
) -> Result<()> {
    let oldest = |e: &mut QueueCounts, at: Option<i64>| {
        e.oldest_ready_at = match (e.oldest_ready_at, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    };
    for (q, _, n, at) in ready_rows(tx, queue)? {
        let e = queue_entry(rows, &q);
        e.ready += n;
        oldest(e, at);
    }
    let mut stmt = tx.prepare_cached(SCHEDULED_BY_QUEUE).map_err(db_error)?;
    let mut found = stmt.query(params![queue, now]).map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let e = queue_entry(rows, &r.get::<_, String>(0).map_err(db_error)?);
        e.ready += r.get::<_, i64>(2).map_err(db_error)?;
        e.scheduled += r.get::<_, i64>(3).map_err(db_error)?;
        oldest(e, r.get(4).map_err(db_error)?);
    }
    let mut stmt = tx.prepare_cached(BLOCKED_BY_QUEUE).map_err(db_error)?;
    let mut found = stmt.query(params![queue]).map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let e = queue_entry(rows, &r.get::<_, String>(0).map_err(db_error)?);
        e.blocked += r.get::<_, i64>(2).map_err(db_error)?;
    }
    Ok(())
}

/// Claimable jobs as `(queue, state, jobs, oldest next_run_at)`, of `queue` or
/// every queue. With one queue to look at (asked for, or the only one the store
/// has), one scan without a sort; else one grouped scan.
fn ready_rows(conn: &Connection, queue: Option<&str>) -> Result<Vec<ReadyRow>> {
    let only = match queue {
        Some(q) => Some(q.to_owned()),
        None => {
            let mut stmt = conn.prepare_cached(QUEUES_WITH_JOBS).map_err(db_error)?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_error)?;
            let mut names: Vec<String> =
                names.collect::<rusqlite::Result<_>>().map_err(db_error)?;
            match names.len() {
                0 => return Ok(Vec::new()),
                1 => names.pop(),
                _ => None,
            }
        }
    };
    let mut rows = Vec::new();
    match only {
        Some(q) => {
            let (pending, failed, oldest): (i64, i64, Option<i64>) = conn
                .prepare_cached(READY_IN_QUEUE)
                .and_then(|mut s| s.query_row([&q], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
                .map_err(db_error)?;
            for (state, n) in [("pending", pending), ("failed", failed)] {
                if n > 0 {
                    rows.push((q.clone(), state.to_owned(), n, oldest));
                }
            }
        }
        None => {
            let mut stmt = conn.prepare_cached(READY_BY_QUEUE).map_err(db_error)?;
            let found = stmt
                .query_map(params![Option::<String>::None], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db_error)?;
            rows = found.collect::<rusqlite::Result<_>>().map_err(db_error)?;
        }
    }
    Ok(rows)
}

/// `(queue, state, jobs, oldest next_run_at)`, see [`ready_rows`].
type ReadyRow = (String, String, i64, Option<i64>);

/// Runs `sql` and collects its `(text, integer)` rows.
fn pairs(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = stmt
        .query_map(values, |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

/// Moves the rollups (attempts, completed jobs) forward if one is a step behind; a
/// cheap read when neither is.
pub(super) fn roll_if_due(tx: &Transaction<'_>, now: i64) -> Result<()> {
    let rolled_to: i64 = tx
        .query_row(READ_ROLLED, [], |r| r.get(0))
        .map_err(db_error)?;
    if let Some(target) = stats::roll_target(rolled_to, now) {
        let moved = tx
            .execute(ROLL_MARK, params![rolled_to, target])
            .map_err(db_error)?;
        if moved == 1 {
            tx.execute(roll_up(), params![rolled_to, target])
                .map_err(db_error)?;
        }
    }
    super::completed::roll_if_due(tx, now)
}

/// Whether the rollup is a step behind at `now` (so `metrics` takes a write
/// transaction to move it).
pub(super) fn roll_due(conn: &Connection, now: i64) -> Result<bool> {
    let rolled_to: i64 = conn
        .query_row(READ_ROLLED, [], |r| r.get(0))
        .map_err(db_error)?;
    Ok(stats::roll_target(rolled_to, now).is_some() || super::completed::roll_due(conn, now)?)
}

/// Forgets the rollup, inside an import's transaction.
pub(super) fn forget_rollup(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(FORGET_ROLLUP).map_err(db_error)
}

/// Every job per queue and state (no zero rows), and `(queue, since)` for the
/// longest-waiting claimable job of each queue: each state through its partial
/// indexes, completed jobs from their rollup ([`super::completed`]). For `metrics`
/// and the dashboard's queues; read in one transaction.
pub(super) fn job_counts(tx: &Connection, now: i64) -> Result<Counted> {
    let mut jobs = Vec::new();
    for (sql, state) in [
        (RUNNING_BY_QUEUE, "processing"),
        (DEAD_BY_QUEUE, "dead"),
        (CANCELLED_BY_QUEUE, "cancelled"),
    ] {
        for (queue, n) in pairs(tx, sql, [])? {
            add_jobs(&mut jobs, queue, state, n);
        }
    }
    for (queue, n) in super::completed::by_queue(tx)? {
        add_jobs(&mut jobs, queue, "completed", n);
    }
    // The waiting jobs, read once for both the counts and the oldest ready job.
    let mut oldest = Vec::new();
    for (queue, state, n, at) in ready_rows(tx, None)? {
        note_oldest(&mut oldest, &queue, at);
        add_jobs(&mut jobs, queue, &state, n);
    }
    let mut stmt = tx.prepare_cached(BLOCKED_BY_QUEUE).map_err(db_error)?;
    let mut found = stmt
        .query(params![Option::<String>::None])
        .map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let state: String = r.get(1).map_err(db_error)?;
        add_jobs(
            &mut jobs,
            r.get(0).map_err(db_error)?,
            &state,
            r.get(2).map_err(db_error)?,
        );
    }
    let mut stmt = tx.prepare_cached(SCHEDULED_BY_QUEUE).map_err(db_error)?;
    let mut found = stmt
        .query(params![Option::<String>::None, now])
        .map_err(db_error)?;
    while let Some(r) = found.next().map_err(db_error)? {
        let queue: String = r.get(0).map_err(db_error)?;
        let state: String = r.get(1).map_err(db_error)?;
        let n = r.get::<_, i64>(2).map_err(db_error)? + r.get::<_, i64>(3).map_err(db_error)?;
        note_oldest(&mut oldest, &queue, r.get(4).map_err(db_error)?);
        add_jobs(&mut jobs, queue, &state, n);
    }
    jobs.retain(|(_, _, n)| *n != 0);
    oldest.sort();
    Ok((jobs, oldest))
}

/// See [`job_counts`].
type Counted = (Vec<(String, String, i64)>, Vec<(String, i64)>);

/// The numbers of `metrics`, read in one transaction at `now`.
pub(super) fn metrics(tx: &Transaction<'_>, now: i64) -> Result<MetricsRaw> {
    let mut raw = MetricsRaw {
        now,
        ..MetricsRaw::default()
    };
    let (jobs, oldest) = job_counts(tx, now)?;
    raw.jobs = jobs;
    raw.oldest_ready = oldest;

    // The attempt history: the rollup, plus everything after its mark.
    let rolled_to: i64 = tx
        .query_row(READ_ROLLED, [], |r| r.get(0))
        .map_err(db_error)?;
    let mut cells = Vec::new();
    for sql in [READ_ROLLUP, attempts_between()] {
        let mut stmt = tx.prepare_cached(sql).map_err(db_error)?;
        let mut found = if sql == READ_ROLLUP {
            stmt.query([])
        } else {
            stmt.query(params![rolled_to, i64::MAX])
        }
        .map_err(db_error)?;
        while let Some(r) = found.next().map_err(db_error)? {
            let kind: String = r.get(0).map_err(db_error)?;
            let bucket: i64 = r.get(3).map_err(db_error)?;
            cells.push((
                kind,
                BucketCount {
                    queue: r.get(1).map_err(db_error)?,
                    outcome: r.get(2).map_err(db_error)?,
                    bucket: usize::try_from(bucket).ok(),
                    count: r.get(4).map_err(db_error)?,
                    sum_ms: r.get(5).map_err(db_error)?,
                },
            ));
        }
    }
    for (kind, cell) in cells {
        let into = if kind == "pickup" {
            &mut raw.pickups
        } else {
            &mut raw.attempts
        };
        stats::add_cell(into, cell);
    }
    Ok(raw)
}
