//! The raw aggregates behind `stats` and `metrics` (issue 13), as both stores return
//! them: counts and sums per queue, and bounded samples for percentiles. What they
//! mean to a reader (rates, percentiles, histograms, the exposition text) is worked
//! out in [`crate::stats`] and [`crate::metrics`], which know nothing of SQL.
//!
//! Invariants: every time is the store's clock; a sample holds at most
//! [`SAMPLE_LIMIT`] values, the newest attempts of the window (read newest first
//! down the `attempts_finished` index and stopped there, so its cost is bounded
//! whatever the window; attempts ending in the same millisecond at the limit may
//! differ between stores); histogram
//! buckets are the indexes of [`BUCKET_BOUNDS_MS`] (the first bound a value does not
//! exceed, `BUCKET_BOUNDS_MS.len()` past the last), computed by the SQL of
//! [`bucket_case`] on both stores.
//!
//! The attempt histories behind `metrics` (counters and histograms over every
//! attempt ever recorded) would cost a scan of the whole `attempts` table per call;
//! instead each store keeps a *rollup*: per queue, outcome and bucket, the attempts
//! that finished before a mark, moved forward in steps of [`ROLL_STEP_MS`] and kept
//! [`ROLL_LAG_MS`] behind the clock (so a transaction that commits late still lands
//! after the mark). A read adds the rollup to the attempts after the mark, which the
//! index on `attempts (finished_at)` finds at once.
//!
//! Completed jobs per queue (the one job count no small partial index holds) are
//! kept the same way (schema version 6): `completed_rollup` holds those a read
//! cannot find through a recent attempt, behind a second mark
//! (`stats_rolled.jobs_until`) that moves with the same lag in smaller steps
//! ([`jobs_roll_target`]); a read
//! adds the completed jobs whose succeeded last attempt finished after the mark.
//! `retry`, `clean` and `import` keep the rollup as they change jobs; claims and
//! finishes never touch it (DECISIONS.md §19).

use std::time::Duration;

/// At most this many durations (and pickup delays) are read for percentiles: the
/// newest attempts of the window. Exact below it, a sample of the latest work above.
pub const SAMPLE_LIMIT: usize = 10_000;

/// The upper bounds of the histogram buckets, in milliseconds (Prometheus `le`, which
/// [`crate::metrics`] prints in seconds). From 5 ms (a `true` job) to an hour.
pub const BUCKET_BOUNDS_MS: [i64; 16] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000,
];

/// The rollup keeps this far behind the store's clock.
pub const ROLL_LAG_MS: i64 = 5 * 60 * 1000;
/// The rollup moves forward once it is this far behind its lag.
pub const ROLL_STEP_MS: i64 = 10 * 60 * 1000;

/// The mark to roll the history up to at `now`, if the rollup at `rolled_to` is far
/// enough behind to be worth a write.
pub fn roll_target(rolled_to: i64, now: i64) -> Option<i64> {
    let target = now - ROLL_LAG_MS;
    (target - rolled_to >= ROLL_STEP_MS).then_some(target)
}

/// The completed-job rollup moves forward once it is this far behind its lag: a
/// read of the job counts (every second on an open dashboard) walks the completed
/// jobs after the mark, so it moves in smaller steps than the attempts' rollup.
pub const JOBS_ROLL_STEP_MS: i64 = 60 * 1000;

/// [`roll_target`] for the completed-job rollup (same lag, [`JOBS_ROLL_STEP_MS`]).
pub fn jobs_roll_target(rolled_to: i64, now: i64) -> Option<i64> {
    let target = now - ROLL_LAG_MS;
    (target - rolled_to >= JOBS_ROLL_STEP_MS).then_some(target)
}

/// A SQL `CASE` giving the bucket index of `expr` (milliseconds; NULL stays NULL),
/// for both dialects.
pub fn bucket_case(expr: &str) -> String {
    let mut sql = format!("CASE WHEN {expr} IS NULL THEN NULL");
    for (index, bound) in BUCKET_BOUNDS_MS.iter().enumerate() {
        sql.push_str(&format!(" WHEN {expr} <= {bound} THEN {index}"));
    }
    sql.push_str(&format!(" ELSE {} END", BUCKET_BOUNDS_MS.len()));
    sql
}

/// What `stats` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRequest {
    /// Attempts and jobs that finished this long ago or later.
    pub window: Duration,
    /// Only this queue's jobs.
    pub queue: Option<String>,
}

/// One queue's counts for `stats` (or every queue's, summed by [`crate::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub queue: String,
    /// Attempts that succeeded in the window (each completes its job).
    pub completed: i64,
    /// Attempts that failed or timed out in the window.
    pub failed_attempts: i64,
    /// Jobs that ended `dead` or `cancelled` in the window.
    pub dead: i64,
    pub cancelled: i64,
    /// Attempts (any outcome) that finished in the last 1, 5 and 15 minutes,
    /// whatever the window.
    pub finished_1m: i64,
    pub finished_5m: i64,
    pub finished_15m: i64,
    /// The longest attempt that finished in the window, exactly (not sampled).
    pub duration_max_ms: Option<i64>,
    /// Waiting jobs now: claimable, waiting for their time (a delay, `run_at`, a
    /// retry's backoff), waiting for the jobs they run after.
    pub ready: i64,
    pub scheduled: i64,
    pub blocked: i64,
    /// Since when the longest-waiting claimable job has been claimable.
    pub oldest_ready_at: Option<i64>,
}

/// What a store answers to a [`StatsRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRaw {
    /// The store's clock when the numbers were taken.
    pub now: i64,
    /// Every queue with something to count, by name.
    pub queues: Vec<QueueCounts>,
    /// `(queue, ms)`: durations of the newest attempts that finished in the window
    /// (those with a start), at most [`SAMPLE_LIMIT`].
    pub durations: Vec<(String, i64)>,
    /// `(queue, ms)`: pickup delays of the first attempts among those of
    /// `durations` (see [`crate::stats`] for the definition).
    pub pickups: Vec<(String, i64)>,
}

/// One histogram cell: how many values fell in bucket `bucket` and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCount {
    pub queue: String,
    /// An attempt outcome (as stored) for attempts; empty for pickup delays.
    pub outcome: String,
    /// An index into [`BUCKET_BOUNDS_MS`] (its length: above the last); `None` for
    /// attempts without a recorded start (counted, but in no histogram).
    pub bucket: Option<usize>,
    pub count: i64,
    pub sum_ms: i64,
}

/// What a store answers for `metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsRaw {
    pub now: i64,
    /// `(queue, state as stored, jobs)`.
    pub jobs: Vec<(String, String, i64)>,
    /// Every recorded attempt, by queue, outcome and duration bucket.
    pub attempts: Vec<BucketCount>,
    /// Pickup delays of first attempts, by queue and bucket.
    pub pickups: Vec<BucketCount>,
    /// `(queue, ready since)` of the longest-waiting claimable job of each queue.
    pub oldest_ready: Vec<(String, i64)>,
}

/// Adds `cell` to `cells`, merging it with the cell of the same key.
pub(crate) fn add_cell(cells: &mut Vec<BucketCount>, cell: BucketCount) {
    match cells
        .iter_mut()
        .find(|c| c.queue == cell.queue && c.outcome == cell.outcome && c.bucket == cell.bucket)
    {
        Some(c) => {
            c.count += cell.count;
            c.sum_ms += cell.sum_ms;
        }
        None => cells.push(cell),
    }
}

/// Adds `n` jobs of `queue` in `state` to `jobs` (`(queue, state, jobs)` rows).
pub(crate) fn add_jobs(jobs: &mut Vec<(String, String, i64)>, queue: String, state: &str, n: i64) {
    match jobs.iter_mut().find(|(q, s, _)| *q == queue && s == state) {
        Some(row) => row.2 += n,
        None => jobs.push((queue, state.to_owned(), n)),
    }
}

/// Keeps in `oldest` the earliest `at` seen for `queue`.
pub(crate) fn note_oldest(oldest: &mut Vec<(String, i64)>, queue: &str, at: Option<i64>) {
    let Some(at) = at else { return };
    match oldest.iter_mut().find(|(q, _)| q == queue) {
        Some(entry) => entry.1 = entry.1.min(at),
        None => oldest.push((queue.to_owned(), at)),
    }
}

/// The counts of `queue` in `rows`, added if missing.
pub(crate) fn queue_entry<'a>(rows: &'a mut Vec<QueueCounts>, queue: &str) -> &'a mut QueueCounts {
    let at = match rows.iter().position(|r| r.queue == queue) {
        Some(at) => at,
        None => {
            rows.push(QueueCounts {
                queue: queue.to_owned(),
                ..QueueCounts::default()
            });
            rows.len() - 1
        }
    };
    &mut rows[at]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_case_names_every_bound_in_order() {
        let sql = bucket_case("d");
        assert!(sql.starts_with("CASE WHEN d IS NULL THEN NULL WHEN d <= 5 THEN 0"));
        assert!(
            sql.ends_with("WHEN d <= 3600000 THEN 15 ELSE 16 END"),
            "{sql}"
        );
    }

    #[test]
    fn the_rollup_moves_in_steps_behind_the_clock() {
        let now = 100 * 60 * 1000;
        assert_eq!(roll_target(0, now), Some(now - ROLL_LAG_MS));
        assert_eq!(roll_target(now - ROLL_LAG_MS - ROLL_STEP_MS + 1, now), None);
        let jobs_behind = now - ROLL_LAG_MS - JOBS_ROLL_STEP_MS;
        assert_eq!(jobs_roll_target(jobs_behind, now), Some(now - ROLL_LAG_MS));
        assert_eq!(jobs_roll_target(jobs_behind + 1, now), None);
    }
}
