//! `stats` and `metrics` on PostgreSQL (issue 13): the same reads as SQLite's
//! `stats` module, in this dialect, so both stores give the same numbers for the
//! same data (tests/conformance/stats.rs).
//!
//! Invariants: the reads of one call run in one `REPEATABLE READ` read-only
//! transaction ([`PgStore::snapshot`]), so the rollup and the attempts after its
//! mark are seen at the same instant and no attempt is counted twice or missed
//! while another process rolls up; the rollup moves forward only in a transaction
//! that first moves the mark (`ROLL_MARK` matches the old mark, and the row lock
//! makes a concurrent roller wait and then find it moved).

use std::sync::OnceLock;

use postgres::{GenericClient, IsolationLevel, Transaction};

use super::{Db, PgStore, Step};
use crate::store::Result;
use crate::store::stats::{
    self, BucketCount, MetricsRaw, QueueCounts, SAMPLE_LIMIT, StatsRaw, StatsRequest, queue_entry,
};

/// The store's clock for the whole transaction.
const NOW: &str = "SELECT now_ms()";

/// See the SQLite statement of the same name.
///
/// `$1` and `$2` are cast: PostgreSQL would infer `$2 - 60000` as `integer`.
const ATTEMPT_COUNTS: &str = "SELECT j.queue, \
     count(*) FILTER (WHERE a.outcome = 'succeeded' AND a.finished_at >= $1::bigint), \
     count(*) FILTER (WHERE a.outcome IN ('failed', 'timed_out') AND a.finished_at >= $1::bigint), \
     count(*) FILTER (WHERE a.finished_at >= $2::bigint - 60000), \
     count(*) FILTER (WHERE a.finished_at >= $2::bigint - 300000), \
     count(*) FILTER (WHERE a.finished_at >= $2::bigint - 900000), \
     max(greatest(0, a.finished_at - a.started_at)) FILTER (WHERE a.finished_at >= $1::bigint) \
     FROM attempts a JOIN jobs j ON j.seq = a.job_seq \
     WHERE a.finished_at >= least($1::bigint, $2::bigint - 900000) AND ($3::text IS NULL OR j.queue = $3) \
     GROUP BY j.queue";

const DEAD_SINCE: &str = "SELECT queue, count(*) FROM jobs \
     WHERE state = 'dead' AND finished_at >= $1 AND ($2::text IS NULL OR queue = $2) \
     GROUP BY queue";

const CANCELLED_SINCE: &str = "SELECT queue, count(*) FROM jobs \
     WHERE state = 'cancelled' AND finished_at >= $1 AND ($2::text IS NULL OR queue = $2) \
     GROUP BY queue";

const READY_BY_QUEUE: &str = "SELECT queue, state, count(*), min(next_run_at) FROM jobs \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND NOT scheduled \
     AND ($1::text IS NULL OR queue = $1) GROUP BY queue, state";

const SCHEDULED_BY_QUEUE: &str = "SELECT queue, state, \
     count(*) FILTER (WHERE next_run_at <= $2), count(*) FILTER (WHERE next_run_at > $2), \
     min(next_run_at) FILTER (WHERE next_run_at <= $2) FROM jobs \
     WHERE scheduled AND state IN ('pending', 'failed') AND blocked_by = 0 \
     AND ($1::text IS NULL OR queue = $1) GROUP BY queue, state";

const BLOCKED_BY_QUEUE: &str = "SELECT queue, state, count(*) FROM jobs \
     WHERE blocked_by > 0 AND state = 'pending' AND ($1::text IS NULL OR queue = $1) \
     GROUP BY queue, state";

/// See the SQLite macro of the same name.
macro_rules! first_attempt {
    () => {
        "a.started_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.job_seq = a.job_seq \
         AND b.lease_token < a.lease_token) \
         AND NOT EXISTS (SELECT 1 FROM job_dependencies d WHERE d.job_id = a.job_id)"
    };
}

/// See the SQLite macro of the same name.
macro_rules! pickup_ms {
    () => {
        "greatest(0, a.started_at - greatest(j.created_at, coalesce(j.run_at, j.created_at)))"
    };
}

/// See the SQLite statement of the same name.
const SAMPLE: &str = concat!(
    "SELECT j.queue, greatest(0, a.finished_at - a.started_at), CASE WHEN ",
    first_attempt!(),
    " THEN ",
    pickup_ms!(),
    " END FROM attempts a JOIN jobs j ON j.seq = a.job_seq \
     WHERE a.finished_at >= $1 AND a.started_at IS NOT NULL AND ($2::text IS NULL OR j.queue = $2) \
     ORDER BY a.finished_at DESC LIMIT $3"
);

const READ_ROLLED: &str = "SELECT until FROM stats_rolled";

/// The clock and both marks.
const READ_MARKS: &str = "SELECT now_ms(), until, jobs_until FROM stats_rolled";

const READ_ROLLUP: &str = "SELECT kind, queue, outcome, bucket, attempts, sum_ms FROM stats_rollup";

const ROLL_MARK: &str = "UPDATE stats_rolled SET until = $2 WHERE until = $1";

const FORGET_ROLLUP: &str = "DELETE FROM stats_rollup";

const RESET_MARK: &str = "UPDATE stats_rolled SET until = 0 WHERE until <> 0";

/// See the SQLite function of the same name.
fn attempts_between() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let duration = "greatest(0, a.finished_at - a.started_at)";
        format!(
            "SELECT 'duration'::text, j.queue, a.outcome, coalesce({}, -1)::bigint AS bucket, \
             count(*), coalesce(sum({duration}), 0)::bigint \
             FROM attempts a JOIN jobs j ON j.seq = a.job_seq \
             WHERE a.finished_at >= $1 AND a.finished_at < $2 GROUP BY j.queue, a.outcome, 4 \
             UNION ALL \
             SELECT 'pickup'::text, j.queue, ''::text, ({})::bigint AS bucket, count(*), \
             coalesce(sum({pickup}), 0)::bigint \
             FROM attempts a JOIN jobs j ON j.seq = a.job_seq \
             WHERE a.finished_at >= $1 AND a.finished_at < $2 AND {} GROUP BY j.queue, 4",
            stats::bucket_case(duration),
            stats::bucket_case(pickup_ms!()),
            first_attempt!(),
            pickup = pickup_ms!(),
        )
    })
}

/// See the SQLite function of the same name.
fn roll_up() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO stats_rollup AS r (kind, queue, outcome, bucket, attempts, sum_ms) \
             SELECT * FROM ({}) AS rows \
             ON CONFLICT (kind, queue, outcome, bucket) DO UPDATE SET \
             attempts = r.attempts + excluded.attempts, sum_ms = r.sum_ms + excluded.sum_ms",
            attempts_between()
        )
    })
}

impl PgStore {
    /// Runs `f` in one `REPEATABLE READ` read-only transaction: every statement sees
    /// the same snapshot.
    pub(super) fn snapshot<T>(
        &mut self,
        f: impl FnOnce(&mut Db<'_, Transaction<'_>>) -> Step<T>,
    ) -> Result<T> {
        let conn = self.conn()?;
        let result = (|| {
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let value = f(&mut Db {
                client: &mut tx,
                stmts: &mut conn.stmts,
            })?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|e| self.failure(e))
    }
}

/// Runs `sql` and collects its `(text, bigint)` rows.
fn pairs<C: GenericClient>(
    db: &mut Db<'_, C>,
    sql: &'static str,
    params: super::Params<'_>,
) -> Step<Vec<(String, i64)>> {
    db.query(sql, params)?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The numbers of `stats`.
pub(super) fn stats<C: GenericClient>(
    db: &mut Db<'_, C>,
    request: &StatsRequest,
) -> Step<StatsRaw> {
    let now: i64 = db.query_one(NOW, &[])?.try_get(0)?;
    let since = now - crate::store::millis(request.window);
    let queue = request.queue.as_deref();
    let mut raw = StatsRaw {
        now,
        ..StatsRaw::default()
    };
    let rows = &mut raw.queues;
    for r in db.query(ATTEMPT_COUNTS, &[&since, &now, &queue])? {
        let q: String = r.try_get(0)?;
        let e = queue_entry(rows, &q);
        e.completed = r.try_get(1)?;
        e.failed_attempts = r.try_get(2)?;
        e.finished_1m = r.try_get(3)?;
        e.finished_5m = r.try_get(4)?;
        e.finished_15m = r.try_get(5)?;
        e.duration_max_ms = r.try_get(6)?;
    }
    for (q, n) in pairs(db, DEAD_SINCE, &[&since, &queue])? {
        queue_entry(rows, &q).dead = n;
    }
    for (q, n) in pairs(db, CANCELLED_SINCE, &[&since, &queue])? {
        queue_entry(rows, &q).cancelled = n;
    }
    backlog(db, now, queue, rows)?;
    rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    let limit = SAMPLE_LIMIT as i64;
    for r in db.query(SAMPLE, &[&since, &queue, &limit])? {
        let q: String = r.try_get(0)?;
        if let Some(pickup) = r.try_get::<_, Option<i64>>(2)? {
            raw.pickups.push((q.clone(), pickup));
        }
        raw.durations.push((q, r.try_get(1)?));
    }
    Ok(raw)
}

/// Adds the waiting jobs of every queue (or `queue`) to `rows`.
fn backlog<C: GenericClient>(
    db: &mut Db<'_, C>,
    now: i64,
    queue: Option<&str>,
    rows: &mut Vec<QueueCounts>,
) -> Step<()> {
    let oldest = |e: &mut QueueCounts, at: Option<i64>| {
        e.oldest_ready_at = match (e.oldest_ready_at, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    };
    for r in db.query(READY_BY_QUEUE, &[&queue])? {
        let e = queue_entry(rows, &r.try_get::<_, String>(0)?);
        e.ready += r.try_get::<_, i64>(2)?;
        oldest(e, r.try_get(3)?);
    }
    for r in db.query(SCHEDULED_BY_QUEUE, &[&queue, &now])? {
        let e = queue_entry(rows, &r.try_get::<_, String>(0)?);
        e.ready += r.try_get::<_, i64>(2)?;
        e.scheduled += r.try_get::<_, i64>(3)?;
        oldest(e, r.try_get(4)?);
    }
    for r in db.query(BLOCKED_BY_QUEUE, &[&queue])? {
        let e = queue_entry(rows, &r.try_get::<_, String>(0)?);
        e.blocked += r.try_get::<_, i64>(2)?;
    }
    Ok(())
}

/// Whether either rollup (attempts, completed jobs) is a step behind the store's
/// clock.
pub(super) fn roll_due<C: GenericClient>(db: &mut Db<'_, C>) -> Step<bool> {
    let row = db.query_one(READ_MARKS, &[])?;
    let (now, attempts_to, jobs_to): (i64, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    Ok(stats::roll_target(attempts_to, now).is_some()
        || stats::jobs_roll_target(jobs_to, now).is_some())
}

/// Moves the rollup forward if it is a step behind.
pub(super) fn roll_if_due(db: &mut Db<'_, Transaction<'_>>) -> Step<()> {
    let now: i64 = db.query_one(NOW, &[])?.try_get(0)?;
    let rolled_to: i64 = db.query_one(READ_ROLLED, &[])?.try_get(0)?;
    if let Some(target) = stats::roll_target(rolled_to, now)
        && db.execute(ROLL_MARK, &[&rolled_to, &target])? == 1
    {
        db.execute(roll_up(), &[&rolled_to, &target])?;
    }
    super::completed::roll_if_due(db, now)
}

/// Forgets the rollup, inside an import's transaction.
pub(super) fn forget_rollup<C: GenericClient>(db: &mut Db<'_, C>) -> Step<()> {
    db.execute(FORGET_ROLLUP, &[])?;
    db.execute(RESET_MARK, &[])?;
    Ok(())
}

/// The numbers of `metrics`.
pub(super) fn metrics(db: &mut Db<'_, Transaction<'_>>) -> Step<MetricsRaw> {
    let now: i64 = db.query_one(NOW, &[])?.try_get(0)?;
    let mut raw = MetricsRaw {
        now,
        ..MetricsRaw::default()
    };
    let (jobs, oldest) = super::completed::job_counts(db)?;
    raw.jobs = jobs;
    raw.oldest_ready = oldest;

    let rolled_to: i64 = db.query_one(READ_ROLLED, &[])?.try_get(0)?;
    let mut found = db.query(READ_ROLLUP, &[])?;
    found.extend(db.query(attempts_between(), &[&rolled_to, &i64::MAX])?);
    for r in found {
        let kind: String = r.try_get(0)?;
        let bucket: i64 = r.try_get(3)?;
        let cell = BucketCount {
            queue: r.try_get(1)?,
            outcome: r.try_get(2)?,
            bucket: usize::try_from(bucket).ok(),
            count: r.try_get(4)?,
            sum_ms: r.try_get(5)?,
        };
        let into = if kind == "pickup" {
            &mut raw.pickups
        } else {
            &mut raw.attempts
        };
        stats::add_cell(into, cell);
    }
    Ok(raw)
}
