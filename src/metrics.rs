//! The Prometheus text exposition of the queue (issue 13): what `queuectl metrics`
//! prints and `GET /metrics` serves, on the dashboard and on `worker start
//! --metrics`. Knows nothing of SQL or terminals: it turns a store's raw aggregates
//! ([`crate::store::stats::MetricsRaw`]) and worker rows into text.
//!
//! Invariants: every family has `# HELP` and `# TYPE` lines and a `queuectl_` name
//! in base units (seconds, not milliseconds); label values are escaped as the format
//! says (backslash, double quote, newline); no label takes unbounded values (queues,
//! states, outcomes and hosts only, never job or worker ids); samples come in a
//! fixed order (by family, then labels), so two documents of the same store diff
//! cleanly. Histogram buckets are cumulative and end with `le="+Inf"` equal to
//! `_count`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::StoreError;
use crate::store::stats::{BUCKET_BOUNDS_MS, BucketCount, MetricsRaw};
use crate::store::{Store, WorkerRow};

/// The Prometheus text exposition document of `store`, computed now.
pub fn exposition(store: &mut dyn Store) -> Result<String, StoreError> {
    let raw = store.metrics()?;
    let workers = store.workers(false)?;
    Ok(render(&raw, &workers))
}

/// The document for `raw` and the live `workers`.
pub fn render(raw: &MetricsRaw, workers: &[WorkerRow]) -> String {
    let mut out = String::new();
    let mut doc = Doc { out: &mut out };

    doc.family(
        "queuectl_jobs",
        "gauge",
        "Jobs in the store, by queue and state.",
    );
    let mut jobs: Vec<_> = raw.jobs.iter().collect();
    jobs.sort();
    for (queue, state, n) in jobs {
        doc.sample(
            "queuectl_jobs",
            &[("queue", queue), ("state", state)],
            *n as f64,
        );
    }

    doc.family(
        "queuectl_attempts_total",
        "counter",
        "Attempts finished, by queue and outcome, from the attempt history.",
    );
    let mut by_outcome: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for cell in &raw.attempts {
        *by_outcome.entry((&cell.queue, &cell.outcome)).or_default() += cell.count;
    }
    for ((queue, outcome), n) in by_outcome {
        doc.sample(
            "queuectl_attempts_total",
            &[("queue", queue), ("outcome", outcome)],
            n as f64,
        );
    }

    doc.histogram(
        "queuectl_attempt_duration_seconds",
        "How long attempts ran, from claim to end, by queue.",
        &raw.attempts,
    );
    doc.histogram(
        "queuectl_pickup_delay_seconds",
        "How long new jobs waited from ready (created, or run_at) to claimed, by queue; \
         first attempts of jobs that run after no other.",
        &raw.pickups,
    );

    doc.family(
        "queuectl_oldest_ready_job_age_seconds",
        "gauge",
        "How long the longest-waiting claimable job of each queue has been claimable \
         (0: none waits).",
    );
    let mut queues: Vec<&str> = raw.jobs.iter().map(|(q, _, _)| q.as_str()).collect();
    queues.extend(raw.oldest_ready.iter().map(|(q, _)| q.as_str()));
    queues.sort_unstable();
    queues.dedup();
    for queue in queues {
        let age_ms = raw
            .oldest_ready
            .iter()
            .find(|(q, _)| q == queue)
            .map_or(0, |(_, at)| (raw.now - at).max(0));
        doc.sample(
            "queuectl_oldest_ready_job_age_seconds",
            &[("queue", queue)],
            seconds(age_ms),
        );
    }

    let mut hosts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for w in workers.iter().filter(|w| w.state.is_live()) {
        let entry = hosts.entry(&w.info.host).or_default();
        entry.0 += 1;
        if w.job.is_some() {
            entry.1 += 1;
        }
    }
    doc.family(
        "queuectl_workers_live",
        "gauge",
        "Live workers (heartbeat within the lease timeout), by host.",
    );
    for (host, (live, _)) in &hosts {
        doc.sample("queuectl_workers_live", &[("host", host)], *live as f64);
    }
    doc.family(
        "queuectl_workers_busy",
        "gauge",
        "Live workers running a job, by host.",
    );
    for (host, (_, busy)) in &hosts {
        doc.sample("queuectl_workers_busy", &[("host", host)], *busy as f64);
    }
    out
}

/// A histogram of round trips measured by one process, for [`round_trip_family`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Count per bucket of [`BUCKET_BOUNDS_MS`] (non-cumulative), plus one past it.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    /// Adds one observation of `ms` milliseconds (fractions kept in the sum).
    pub fn observe(&mut self, ms: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKET_BOUNDS_MS.len() + 1];
        }
        let at = BUCKET_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound as f64)
            .unwrap_or(BUCKET_BOUNDS_MS.len());
        self.buckets[at] += 1;
        self.count += 1;
        self.sum_seconds += ms / 1000.0;
    }
}

/// The family a worker process adds to its own `/metrics`: the store round trips
/// (group commits) it measured, labelled with its host. Only the worker knows them,
/// so only `worker start --metrics` serves this family.
pub fn round_trip_family(host: &str, histogram: &Histogram) -> String {
    let mut out = String::new();
    let mut doc = Doc { out: &mut out };
    let name = "queuectl_store_round_trip_seconds";
    doc.family(
        name,
        "histogram",
        "How long this worker process's store round trips (finish, renew, claim in \
         one transaction) took.",
    );
    let mut cumulative = 0;
    for (at, bound) in BUCKET_BOUNDS_MS.iter().enumerate() {
        cumulative += histogram.buckets.get(at).copied().unwrap_or(0);
        let le = format_value(seconds(*bound));
        doc.sample(
            &format!("{name}_bucket"),
            &[("host", host), ("le", &le)],
            cumulative as f64,
        );
    }
    doc.sample(
        &format!("{name}_bucket"),
        &[("host", host), ("le", "+Inf")],
        histogram.count as f64,
    );
    doc.sample(
        &format!("{name}_sum"),
        &[("host", host)],
        histogram.sum_seconds,
    );
    doc.sample(
        &format!("{name}_count"),
        &[("host", host)],
        histogram.count as f64,
    );
    out
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A sample value: integers without a fraction, others as Rust prints them
/// (shortest exact form, which the format accepts).
fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

struct Doc<'a> {
    out: &'a mut String,
}

impl Doc<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A histogram by queue from `cells` (outcomes summed; cells without a bucket
    /// left out).
    fn histogram(&mut self, name: &str, help: &str, cells: &[BucketCount]) {
        self.family(name, "histogram", help);
        let mut by_queue: BTreeMap<&str, (Vec<i64>, i64)> = BTreeMap::new();
        for cell in cells {
            let Some(bucket) = cell.bucket else { continue };
            let entry = by_queue
                .entry(&cell.queue)
                .or_insert_with(|| (vec![0; BUCKET_BOUNDS_MS.len() + 1], 0));
            if let Some(slot) = entry.0.get_mut(bucket) {
                *slot += cell.count;
            }
            entry.1 += cell.sum_ms;
        }
        for (queue, (buckets, sum_ms)) in by_queue {
            let mut cumulative = 0;
            for (at, bound) in BUCKET_BOUNDS_MS.iter().enumerate() {
                cumulative += buckets[at];
                let le = format_value(seconds(*bound));
                self.sample(
                    &format!("{name}_bucket"),
                    &[("queue", queue), ("le", &le)],
                    cumulative as f64,
                );
            }
            let count: i64 = buckets.iter().sum();
            self.sample(
                &format!("{name}_bucket"),
                &[("queue", queue), ("le", "+Inf")],
                count as f64,
            );
            self.sample(&format!("{name}_sum"), &[("queue", queue)], seconds(sum_ms));
            self.sample(&format!("{name}_count"), &[("queue", queue)], count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn histograms_are_cumulative_and_end_at_the_count() {
        let raw = MetricsRaw {
            now: 10_000,
            jobs: vec![("q\"1".into(), "completed".into(), 3)],
            attempts: vec![
                BucketCount {
                    queue: "q\"1".into(),
                    outcome: "succeeded".into(),
                    bucket: Some(0),
                    count: 2,
                    sum_ms: 6,
                },
                BucketCount {
                    queue: "q\"1".into(),
                    outcome: "failed".into(),
                    bucket: Some(7),
                    count: 1,
                    sum_ms: 900,
                },
            ],
            pickups: Vec::new(),
            oldest_ready: vec![("q\"1".into(), 4_000)],
        };
        let text = render(&raw, &[]);
        assert!(text.contains("queuectl_jobs{queue=\"q\\\"1\",state=\"completed\"} 3\n"));
        assert!(text.contains(
            "queuectl_attempt_duration_seconds_bucket{queue=\"q\\\"1\",le=\"0.005\"} 2\n"
        ));
        assert!(
            text.contains(
                "queuectl_attempt_duration_seconds_bucket{queue=\"q\\\"1\",le=\"0.5\"} 2\n"
            )
        );
        assert!(
            text.contains(
                "queuectl_attempt_duration_seconds_bucket{queue=\"q\\\"1\",le=\"1\"} 3\n"
            )
        );
        assert!(text.contains(
            "queuectl_attempt_duration_seconds_bucket{queue=\"q\\\"1\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("queuectl_attempt_duration_seconds_sum{queue=\"q\\\"1\"} 0.906\n"));
        assert!(text.contains("queuectl_oldest_ready_job_age_seconds{queue=\"q\\\"1\"} 6\n"));
        for family in [
            "queuectl_jobs",
            "queuectl_attempts_total",
            "queuectl_attempt_duration_seconds",
            "queuectl_pickup_delay_seconds",
            "queuectl_workers_live",
            "queuectl_workers_busy",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
    }

    #[test]
    fn a_round_trip_histogram_counts_each_observation_once() {
        let mut h = Histogram::default();
        h.observe(0.4);
        h.observe(7.0);
        h.observe(1e9);
        let text = round_trip_family("vm", &h);
        assert!(
            text.contains("_bucket{host=\"vm\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{host=\"vm\",le=\"0.01\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{host=\"vm\",le=\"3600\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{host=\"vm\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("queuectl_store_round_trip_seconds_count{host=\"vm\"} 3\n"));
    }
}
