//! The numbers of `queuectl stats` (issue 13), worked out from a store's raw
//! aggregates ([`crate::store::stats::StatsRaw`]): per queue and in total, what
//! finished in the window, the success rate, throughput over the last 1, 5 and 15
//! minutes, attempt duration and pickup delay percentiles, and the backlog. Knows
//! nothing of SQL or terminals.
//!
//! Definitions (README "Stats and metrics", DECISIONS §19):
//! - `completed`: attempts that succeeded in the window; `failed_attempts`: attempts
//!   that failed or timed out in it (each retry counts); `dead` and `cancelled`:
//!   jobs that ended so in it.
//! - `success_rate`: completed / (completed + failed attempts); `None` when neither.
//! - throughput: attempts finished (any outcome) per second over the last 1, 5 and
//!   15 minutes, whatever the window.
//! - percentiles: nearest rank over the sample: the newest
//!   [`crate::store::stats::SAMPLE_LIMIT`] attempts of the window (all of them
//!   below that), pickup delays over the first attempts among them.
//! - pickup delay: a first attempt's claim minus when its job became claimable
//!   (created, or its `run_at`); retries (which wait for a backoff on purpose) and
//!   jobs that run after others (whose release time the store does not keep) are
//!   left out.

use std::time::Duration;

use crate::store::stats::{QueueCounts, StatsRaw};

/// One queue's numbers, or every queue's (`queue` `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub queue: Option<String>,
    pub completed: i64,
    pub failed_attempts: i64,
    pub dead: i64,
    pub cancelled: i64,
    pub success_rate: Option<f64>,
    /// Attempts finished per second over the last 1, 5 and 15 minutes.
    pub throughput_per_second: [f64; 3],
    pub duration_p50_ms: Option<i64>,
    pub duration_p95_ms: Option<i64>,
    pub duration_max_ms: Option<i64>,
    pub pickup_p50_ms: Option<i64>,
    pub pickup_p95_ms: Option<i64>,
    pub ready: i64,
    pub waiting_for_time: i64,
    pub waiting_for_dependencies: i64,
    pub oldest_ready_age_ms: Option<i64>,
}

/// Everything `stats` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The window's length.
    pub since: Duration,
    /// The store's clock when the numbers were taken.
    pub now: i64,
    pub total: Summary,
    /// Every queue with something to show, by name.
    pub queues: Vec<Summary>,
}

/// The seconds of the 1, 5 and 15 minute throughput windows.
pub const THROUGHPUT_WINDOWS_S: [i64; 3] = [60, 300, 900];

/// Works out the report for `raw`, read over a window of `since`.
pub fn summarize(raw: &StatsRaw, since: Duration) -> Report {
    let queues: Vec<Summary> = raw
        .queues
        .iter()
        .map(|q| summary(Some(q), raw, Some(&q.queue)))
        .collect();
    let mut all = QueueCounts::default();
    for q in &raw.queues {
        all.completed += q.completed;
        all.failed_attempts += q.failed_attempts;
        all.dead += q.dead;
        all.cancelled += q.cancelled;
        all.finished_1m += q.finished_1m;
        all.finished_5m += q.finished_5m;
        all.finished_15m += q.finished_15m;
        all.duration_max_ms = all.duration_max_ms.max(q.duration_max_ms);
        all.ready += q.ready;
        all.scheduled += q.scheduled;
        all.blocked += q.blocked;
        all.oldest_ready_at = match (all.oldest_ready_at, q.oldest_ready_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Report {
        since,
        now: raw.now,
        total: summary(Some(&all), raw, None),
        queues,
    }
}

/// The summary of `counts`, with percentiles from the samples of `queue` (all
/// queues for `None`).
fn summary(counts: Option<&QueueCounts>, raw: &StatsRaw, queue: Option<&str>) -> Summary {
    let c = counts.cloned().unwrap_or_default();
    let pick = |sample: &[(String, i64)]| -> Vec<i64> {
        let mut values: Vec<i64> = sample
            .iter()
            .filter(|(q, _)| queue.is_none_or(|want| want == q))
            .map(|(_, v)| (*v).max(0))
            .collect();
        values.sort_unstable();
        values
    };
    let durations = pick(&raw.durations);
    let pickups = pick(&raw.pickups);
    let attempts = c.completed + c.failed_attempts;
    let finished = [c.finished_1m, c.finished_5m, c.finished_15m];
    let mut throughput = [0.0; 3];
    for (at, secs) in THROUGHPUT_WINDOWS_S.iter().enumerate() {
        throughput[at] = finished[at] as f64 / *secs as f64;
    }
    Summary {
        queue: queue.map(str::to_owned),
        completed: c.completed,
        failed_attempts: c.failed_attempts,
        dead: c.dead,
        cancelled: c.cancelled,
        success_rate: (attempts > 0).then(|| c.completed as f64 / attempts as f64),
        throughput_per_second: throughput,
        duration_p50_ms: percentile(&durations, 50.0),
        duration_p95_ms: percentile(&durations, 95.0),
        duration_max_ms: c.duration_max_ms.map(|ms| ms.max(0)),
        pickup_p50_ms: percentile(&pickups, 50.0),
        pickup_p95_ms: percentile(&pickups, 95.0),
        ready: c.ready,
        waiting_for_time: c.scheduled,
        waiting_for_dependencies: c.blocked,
        oldest_ready_age_ms: c.oldest_ready_at.map(|at| (raw.now - at).max(0)),
    }
}

/// The `p`th percentile of `sorted` by nearest rank: the smallest value with at
/// least `p`% of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 95.0), Some(95));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_total_adds_up_the_queues_and_pools_their_samples() {
        let raw = StatsRaw {
            now: 100_000,
            queues: vec![
                QueueCounts {
                    queue: "a".into(),
                    completed: 3,
                    failed_attempts: 1,
                    finished_1m: 6,
                    duration_max_ms: Some(40),
                    ready: 2,
                    oldest_ready_at: Some(90_000),
                    ..QueueCounts::default()
                },
                QueueCounts {
                    queue: "b".into(),
                    dead: 1,
                    failed_attempts: 2,
                    duration_max_ms: Some(70),
                    oldest_ready_at: Some(95_000),
                    ..QueueCounts::default()
                },
            ],
            durations: vec![("a".into(), 10), ("a".into(), 40), ("b".into(), 70)],
            pickups: vec![("b".into(), -5)],
        };
        let report = summarize(&raw, Duration::from_secs(3600));
        assert_eq!(report.total.completed, 3);
        assert_eq!(report.total.failed_attempts, 3);
        assert_eq!(report.total.success_rate, Some(0.5));
        assert_eq!(report.total.throughput_per_second[0], 0.1);
        assert_eq!(report.total.duration_p50_ms, Some(40));
        assert_eq!(report.total.duration_max_ms, Some(70));
        assert_eq!(report.total.oldest_ready_age_ms, Some(10_000));
        assert_eq!(report.queues[0].duration_p95_ms, Some(40));
        assert_eq!(report.queues[1].success_rate, Some(0.0));
        assert_eq!(
            report.queues[1].pickup_p50_ms,
            Some(0),
            "clock steps read as 0"
        );
    }
}
