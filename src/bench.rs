//! `queuectl bench`: measures the queue the way users run it.
//!
//! Each mode builds its own store (a temporary SQLite file unless `--db` is given; a
//! `--db` store that is in use gets a scratch store beside it, deleted afterwards),
//! drives the real worker and enqueue code paths, and reports rates and latency
//! percentiles. Absolute numbers depend on the machine, so every report names the
//! hardware, and comparisons belong in ratios measured in the same run
//! (`bench/compare.sh`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{StoreError, WorkerError};
use crate::job::{JobState, NewJob, generate_id};
use crate::store::{self, IfMissing, Location, OpenFor, StopRequest, Store};
use crate::worker::{self, Executor, Options};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Queue overhead alone: bulk enqueue, then workers that run nothing.
    Noop,
    /// End to end with real `sh -c true` jobs (or `--command`).
    Shell,
    /// Idle workers; one job at a time; enqueue commit to child start.
    Latency,
    /// `queuectl enqueue` calls, and bulk `enqueue --file`.
    Enqueue,
}

/// One measured quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

impl Metric {
    /// The metric's key in `bench --json`: its name in snake_case ending with its
    /// unit, so a script never has to guess one (`throughput_jobs_per_second`,
    /// `claim_latency_p50_ms`, `wall_time_seconds`, `jobs_completed`).
    pub fn key(&self) -> String {
        let mut key = String::new();
        for word in self.name.split(|c: char| !c.is_ascii_alphanumeric()) {
            if !word.is_empty() {
                if !key.is_empty() {
                    key.push('_');
                }
                key.push_str(&word.to_ascii_lowercase());
            }
        }
        let unit = match self.unit {
            "jobs/s" => "jobs_per_second",
            "s" => "seconds",
            "x" => "ratio",
            other => other,
        };
        let named = key.split('_').any(|word| word == unit);
        if !named {
            key.push('_');
            key.push_str(unit);
        }
        key
    }
}

/// The outcome of a bench run.
#[derive(Debug, Clone)]
pub struct Report {
    pub store: String,
    pub metrics: Vec<Metric>,
}

/// The bench parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub jobs: usize,
    pub workers: usize,
    /// `None`: a temporary SQLite store.
    pub location: Option<Location>,
    /// Measure in `location` even when it holds jobs or live workers (`--in-place`).
    pub in_place: bool,
    /// The queuectl binary, for the modes that time CLI calls.
    pub exe: PathBuf,
    /// What each job runs in `shell` and `latency` modes (`true` by default), e.g.
    /// `echo hello` to include the cost of keeping output.
    pub command: String,
    /// Spread the jobs over this many queues (1: all in `default`).
    pub queues: usize,
    /// Give each job a random priority (the claim then orders by it).
    pub random_priorities: bool,
}

/// Runs `plan`.
pub fn run(plan: &Plan) -> Result<Report, WorkerError> {
    let scratch =
        tempfile::tempdir().map_err(|e| WorkerError::io("cannot create a temp dir", e))?;
    let (location, beside) = match &plan.location {
        None => (Location::Sqlite(scratch.path().join("bench.db")), false),
        Some(given) if !plan.in_place && in_use(given)? => {
            let tag = generate_id().replace('-', "");
            let beside = given.scratch_beside(&tag[tag.len() - 12..]);
            crate::log::info(&format!(
                "{} holds jobs or live workers, which bench must not mix with its own; \
                 measuring in {} instead, deleted afterwards",
                given.describe(),
                beside.describe()
            ));
            (beside, true)
        }
        Some(given) => (given.clone(), false),
    };
    let mut report = Report {
        store: location.describe(),
        metrics: Vec::new(),
    };
    let measured = match plan.mode {
        Mode::Noop => burn_down(plan, &location, Executor::Noop, &mut report),
        Mode::Shell => burn_down(plan, &location, Executor::Shell, &mut report),
        Mode::Latency => latency(plan, &location, &mut report),
        Mode::Enqueue => enqueue(plan, scratch.path(), &location, &mut report),
    };
    if beside && let Err(e) = store::remove_scratch(&location) {
        crate::log::warn(&format!("could not delete {}: {e}", location.describe()));
    }
    measured.map(|()| report)
}

/// Whether a store given with `--db` already has jobs or live workers. bench's
/// workers would claim those jobs (and in `noop` mode mark them completed without
/// running them), and the store's workers would take bench's jobs.
fn in_use(location: &Location) -> Result<bool, StoreError> {
    let mut store = store::open(location, OpenFor::Command, IfMissing::Create)?;
    let counts = store.counts()?;
    let jobs: i64 = JobState::ALL.iter().map(|s| counts.get(*s)).sum();
    Ok(jobs > 0 || !store.workers(false)?.is_empty())
}

fn jobs_for(plan: &Plan, count: usize, cwd: &str) -> Vec<NewJob> {
    // A small xorshift generator: the spread of priorities matters, not their
    // quality, and the same run gets the same priorities.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..count)
        .map(|i| {
            let mut job = NewJob {
                max_retries: Some(0),
                ..NewJob::new(generate_id(), plan.command.clone(), cwd.to_owned())
            };
            if plan.queues > 1 {
                job.queue = format!("queue-{}", i % plan.queues);
            }
            if plan.random_priorities {
                job.priority = i64::try_from(next() % 2001).unwrap_or(0) - 1000;
            }
            job
        })
        .collect()
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

/// Enqueues `plan.jobs` in bulk, then lets `plan.workers` workers burn them down.
fn burn_down(
    plan: &Plan,
    location: &Location,
    executor: Executor,
    report: &mut Report,
) -> Result<(), WorkerError> {
    let mut store = store::open(location, OpenFor::Worker, IfMissing::Create)?;
    let started = Instant::now();
    for chunk in jobs_for(plan, plan.jobs, &cwd()).chunks(10_000) {
        store.enqueue(chunk)?;
    }
    report.push(
        "bulk enqueue",
        per_sec(plan.jobs, started.elapsed()),
        "jobs/s",
    );
    let options = Options {
        queues: None,
        count: plan.workers,
        burst: true,
        executor,
        log_jobs: false,
        handle_signals: false,
        timings: true,
        on_spawn: None,
        on_notice: None,
        round_trips: None,
    };
    let started = Instant::now();
    let summary = worker::run(store, &options)?;
    let elapsed = started.elapsed();
    let done = usize::try_from(summary.succeeded).unwrap_or(usize::MAX);
    report.push("jobs completed", done as f64, "jobs");
    report.push("throughput", per_sec(done, elapsed), "jobs/s");
    report.push("wall time", elapsed.as_secs_f64(), "s");
    report.percentiles("claim latency", &summary.claim_latencies);
    report.percentiles("completion latency", &summary.completion_latencies);
    Ok(())
}

/// Idle workers; jobs enqueued one at a time through the normal enqueue path; the
/// time from the enqueue commit to the job's process having started.
fn latency(plan: &Plan, location: &Location, report: &mut Report) -> Result<(), WorkerError> {
    let mut store = store::open(location, OpenFor::Worker, IfMissing::Create)?;
    let worker_store = store::open(location, OpenFor::Worker, IfMissing::Create)?;
    let (spawned_tx, spawned_rx) = mpsc::channel::<(String, Instant)>();
    let spawned_tx = Mutex::new(spawned_tx);
    let options = Options {
        queues: None,
        count: plan.workers,
        burst: false,
        executor: Executor::Shell,
        log_jobs: false,
        handle_signals: false,
        timings: false,
        on_spawn: Some(Arc::new(move |job| {
            if let Ok(tx) = spawned_tx.lock() {
                let _ = tx.send((job.id.clone(), Instant::now()));
            }
        })),
        on_notice: None,
        round_trips: None,
    };
    let worker = thread::spawn(move || worker::run(worker_store, &options));
    wait_for_workers(store.as_mut(), plan.workers)?;
    let mut latencies = Vec::with_capacity(plan.jobs);
    let cwd = cwd();
    for _ in 0..plan.jobs {
        let job = jobs_for(plan, 1, &cwd);
        store.enqueue(&job)?;
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match spawned_rx.recv_timeout(left) {
                Ok((id, at)) if id == job[0].id => {
                    latencies.push(at.saturating_duration_since(committed));
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(WorkerError::Stalled(
                        "a job was not picked up within 10 s; are other workers on this store?"
                            .into(),
                    ));
                }
            }
        }
        // Let the job finish so the next one meets idle workers.
        thread::sleep(Duration::from_millis(20));
    }
    store.request_stop(None, StopRequest::Graceful)?;
    let _ = worker.join();
    report.push("jobs", latencies.len() as f64, "jobs");
    report.percentiles("pickup latency", &latencies);
    Ok(())
}

fn wait_for_workers(store: &mut dyn Store, count: usize) -> Result<(), WorkerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.workers(false)?.len() < count {
        if Instant::now() >= deadline {
            return Err(WorkerError::Stalled(
                "workers did not start within 10 s".into(),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    // Give the first idle claim round time to finish so measurements start idle.
    thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// How many single `enqueue` calls `--mode enqueue` times.
const SINGLE_CALLS: usize = 200;

/// Times single `queuectl enqueue` calls against `queuectl --version` (a process
/// start that does no work), then one `enqueue --file` of `plan.jobs` lines.
fn enqueue(
    plan: &Plan,
    scratch: &Path,
    location: &Location,
    report: &mut Report,
) -> Result<(), WorkerError> {
    let db = match location {
        Location::Sqlite(path) => path.to_string_lossy().into_owned(),
        Location::Postgres(_) => {
            return Err(StoreError::BadLocation(
                "--mode enqueue measures the embedded store; run it without --db".into(),
            )
            .into());
        }
    };
    let calls = plan.jobs.min(SINGLE_CALLS);
    let time_call = |args: &[&str], db: &str| -> Result<Duration, WorkerError> {
        let started = Instant::now();
        let status = Command::new(&plan.exe)
            .args(args)
            .env("QUEUECTL_DB", db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| WorkerError::io(format!("cannot run {}", plan.exe.display()), e))?;
        if !status.success() {
            return Err(WorkerError::Stalled(format!(
                "`queuectl {}` failed",
                args.join(" ")
            )));
        }
        Ok(started.elapsed())
    };
    time_call(&["enqueue", "--command", "true"], &db)?;
    let mut baseline = Vec::with_capacity(calls);
    let mut single = Vec::with_capacity(calls);
    for _ in 0..calls {
        baseline.push(time_call(&["--version"], &db)?);
        single.push(time_call(&["enqueue", "--command", "true"], &db)?);
    }
    report.percentiles("process start (--version)", &baseline);
    report.percentiles("enqueue call", &single);
    let ratio = median(&single).as_secs_f64() / median(&baseline).as_secs_f64().max(1e-9);
    report.push("enqueue / process start (median)", ratio, "x");

    let file = scratch.join("jobs.jsonl");
    let mut lines = String::with_capacity(plan.jobs * 24);
    for _ in 0..plan.jobs {
        lines.push_str("{\"command\":\"true\"}\n");
    }
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .map_err(|e| WorkerError::io(format!("cannot write {}", file.display()), e))?;
    let bulk_db = scratch.join("bulk.db").to_string_lossy().into_owned();
    let file_arg = file.to_string_lossy().into_owned();
    let took = time_call(&["enqueue", "--file", &file_arg], &bulk_db)?;
    report.push("enqueue --file", per_sec(plan.jobs, took), "jobs/s");
    Ok(())
}

impl Report {
    fn push(&mut self, name: &str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            value,
            unit,
        });
    }

    fn percentiles(&mut self, name: &str, samples: &[Duration]) {
        if samples.is_empty() {
            return;
        }
        let mut sorted = samples.to_vec();
        sorted.sort();
        for (label, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            let ms = percentile(&sorted, q).as_secs_f64() * 1000.0;
            self.push(&format!("{name} {label}"), ms, "ms");
        }
        let max = sorted.last().copied().unwrap_or_default();
        self.push(&format!("{name} max"), max.as_secs_f64() * 1000.0, "ms");
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, 0.5)
}

fn per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The CPU model and core count, for the report header.
pub fn hardware() -> (String, usize) {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    (model, cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(
            median(&[Duration::from_millis(3)]),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn json_keys_are_snake_case_and_end_with_their_unit() {
        let key = |name: &str, unit: &'static str| {
            Metric {
                name: name.into(),
                value: 0.0,
                unit,
            }
            .key()
        };
        assert_eq!(key("throughput", "jobs/s"), "throughput_jobs_per_second");
        assert_eq!(key("claim latency p50", "ms"), "claim_latency_p50_ms");
        assert_eq!(key("wall time", "s"), "wall_time_seconds");
        assert_eq!(key("jobs completed", "jobs"), "jobs_completed");
        assert_eq!(key("jobs", "jobs"), "jobs");
        assert_eq!(
            key("process start (--version) p95", "ms"),
            "process_start_version_p95_ms"
        );
        assert_eq!(
            key("enqueue / process start (median)", "x"),
            "enqueue_process_start_median_ratio"
        );
        assert_eq!(
            key("enqueue --file", "jobs/s"),
            "enqueue_file_jobs_per_second"
        );
    }

    #[test]
    fn noop_bench_completes_every_job() {
        let plan = Plan {
            mode: Mode::Noop,
            jobs: 300,
            workers: 4,
            location: None,
            in_place: false,
            exe: PathBuf::from("queuectl"),
            command: "true".into(),
            queues: 1,
            random_priorities: false,
        };
        let report = run(&plan).expect("bench runs");
        let done = report.metrics.iter().find(|m| m.name == "jobs completed");
        assert_eq!(done.map(|m| m.value), Some(300.0));
        let spread = Plan {
            queues: 10,
            random_priorities: true,
            ..plan
        };
        let report = run(&spread).expect("bench runs over 10 queues");
        let done = report.metrics.iter().find(|m| m.name == "jobs completed");
        assert_eq!(done.map(|m| m.value), Some(300.0));
    }
}
