//! The checker: reads the run log (what the jobs' commands saw) and the final store
//! (`queuectl export`: each job with its attempt history) and lists every way they
//! break the guarantees. It also measures how long recovery took after each SIGKILL.
//!
//! A run is one start mark in the log; it is matched to the store's attempt row of the
//! same job whose worker process is the run's parent and whose time span holds the
//! run's start. A run killed with its worker has no end mark: its processes are known
//! to be gone by the time the row was closed (recovery kills the attempt's process
//! group before it releases the job, DECISIONS §2), so the row's end bounds the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::common::parse_time;
use crate::driver::Faults;
use crate::workload::Plan;

/// DECISIONS §2: a SIGKILLed worker's job is released within one recovery pass (1 s)
/// when a live process is on the same host, and within `lease-timeout` (10 s) +
/// `heartbeat-interval` (2 s) + one pass (1 s) = 13 s in the worst case.
pub const RECOVERY_BOUND_US: i64 = 13_000_000;
/// After a store outage a worker waits one lease period (10 s) before judging others'
/// leases (`worker::store_retry::StoreRetry::settled`): a kill near a PostgreSQL fault
/// may take that much longer, plus the time the server was down.
pub const SETTLE_US: i64 = 10_000_000;
/// Store times are whole milliseconds (truncated); the log's are nanoseconds.
const SLACK_US: i64 = 2_000;
/// How much sooner than its timeout a run may be stopped before it counts as early.
const EARLY_TIMEOUT_SLACK_US: i64 = 100_000;
/// What the error of an attempt row stopped by a second SIGTERM says.
const FORCED_STOP: &str = "stopped by force";

#[derive(Debug)]
struct Run {
    job: String,
    attempt: i64,
    pid: i64,
    ppid: u32,
    start_us: i64,
    end: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Row {
    token: i64,
    worker_pid: Option<u32>,
    started_us: i64,
    finished_us: Option<i64>,
    outcome: String,
    exit_code: Option<i64>,
    pid: Option<i64>,
    error: String,
}

/// What the run amounted to: the figures `RELIABILITY.md` reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub jobs: usize,
    pub by_kind: BTreeMap<&'static str, usize>,
    pub completed: usize,
    pub dead: usize,
    pub dead_by_interruptions: usize,
    pub runs: usize,
    pub attempts: usize,
    pub interrupted: usize,
    pub interrupted_by_sigkill: usize,
    pub forced_stops: usize,
    /// Attempt rows recorded as starting before the previous one ended (not runs).
    pub row_inversions: Vec<String>,
    /// Timeouts that stopped a command well before it had run for the timeout.
    pub early_timeouts: Vec<String>,
    pub recoveries_us: Vec<i64>,
}

impl Summary {
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.recoveries_us.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

fn parse_log(text: &str, problems: &mut Vec<String>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    // (job, pid, ppid, attempt) -> index of its latest run without an end mark.
    let mut open: HashMap<(String, i64, u32, i64), usize> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = (|| {
            Some((
                f.get(1)?.to_string(),
                f.get(2)?.parse::<i64>().ok()?,
                f.get(3)?.parse::<i64>().ok()?,
                f.get(4)?.parse::<u32>().ok()?,
                f.get(5)?.parse::<i64>().ok()? / 1000,
            ))
        })();
        let Some((job, attempt, pid, ppid, at_us)) = parsed else {
            problems.push(format!("unreadable run log line: {line:?}"));
            continue;
        };
        let key = (job.clone(), pid, ppid, attempt);
        match f[0] {
            "S" => {
                open.insert(key, runs.len());
                runs.push(Run {
                    job,
                    attempt,
                    pid,
                    ppid,
                    start_us: at_us,
                    end: None,
                });
            }
            "E" => {
                let code = f.get(6).and_then(|c| c.parse().ok()).unwrap_or(-1);
                match open.remove(&key) {
                    Some(i) => runs[i].end = Some((at_us, code)),
                    None => problems.push(format!("end mark without a start: {line:?}")),
                }
            }
            _ => problems.push(format!("unreadable run log line: {line:?}")),
        }
    }
    runs
}

fn time_us(v: &Value) -> Option<i64> {
    v.as_str().map(|s| parse_time(s) * 1000)
}

fn rows_of(job: &Value) -> Vec<Row> {
    let mut rows: Vec<Row> = job["attempts_history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Row {
            token: r["attempt_token"].as_i64().unwrap_or(-1),
            worker_pid: r["worker"]
                .as_str()
                .and_then(|w| w.rsplit('-').nth(1))
                .and_then(|p| p.parse().ok()),
            started_us: time_us(&r["started_at"]).unwrap_or(0),
            finished_us: time_us(&r["finished_at"]),
            outcome: r["outcome"].as_str().unwrap_or("").to_owned(),
            exit_code: r["exit_code"].as_i64(),
            pid: r["pid"].as_i64(),
            error: r["error"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    rows.sort_by_key(|r| r.token);
    rows
}

/// Live processes (zombies aside) started by an attempt of this run: found by the
/// variable every job of the run has in its environment.
pub fn leftover_processes(token: &str) -> Vec<String> {
    let needle = format!("QUEUECTL_CHAOS_RUN={token}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i64 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let hit = environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes());
            (hit && crate::common::process_alive(pid)).then(|| {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
                )
            })
        })
        .collect()
}

/// Checks the log at `log` against the exported store; returns the summary and the
/// violations found (none when all is well).
pub fn check(plans: &[Plan], export: &str, log: &Path, faults: &Faults) -> (Summary, Vec<String>) {
    let mut problems = Vec::new();
    let mut summary = Summary {
        jobs: plans.len(),
        ..Summary::default()
    };
    for p in plans {
        *summary.by_kind.entry(p.kind.name()).or_default() += 1;
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let runs = parse_log(&log_text, &mut problems);
    summary.runs = runs.len();
    let mut runs_of: HashMap<&str, Vec<&Run>> = HashMap::new();
    for r in &runs {
        runs_of.entry(r.job.as_str()).or_default().push(r);
    }

    let mut exported: HashMap<String, Value> = HashMap::new();
    for line in export.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(job) => {
                let id = job["id"].as_str().unwrap_or("").to_owned();
                exported.insert(id, job);
            }
            Err(e) => problems.push(format!("unreadable export line ({e}): {line}")),
        }
    }
    let planned: HashSet<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    for id in exported.keys() {
        if !planned.contains(id.as_str()) {
            problems.push(format!("job {id} is in the store but was never enqueued"));
        }
    }

    for plan in plans {
        let Some(job) = exported.get(&plan.id) else {
            problems.push(format!("job {} was enqueued and is lost", plan.id));
            continue;
        };
        check_job(
            plan,
            job,
            runs_of.get(plan.id.as_str()),
            faults,
            &mut summary,
            &mut problems,
        );
    }
    for r in &runs {
        if !planned.contains(r.job.as_str()) {
            problems.push(format!("the log has a run of unknown job {}", r.job));
        }
    }
    (summary, problems)
}

fn check_job(
    plan: &Plan,
    job: &Value,
    runs: Option<&Vec<&Run>>,
    faults: &Faults,
    summary: &mut Summary,
    problems: &mut Vec<String>,
) {
    let id = &plan.id;
    let state = job["state"].as_str().unwrap_or("");
    let interruptions = job["interruptions"].as_i64().unwrap_or(-1);
    let rows = rows_of(job);
    let runs: Vec<&Run> = runs.cloned().unwrap_or_default();
    let max = queuectl::job::MAX_INTERRUPTIONS;

    // Ends finished, and the way its kind must end.
    match state {
        "completed" => summary.completed += 1,
        "dead" => summary.dead += 1,
        _ => problems.push(format!("job {id} is stuck in {state}")),
    }
    // A timeout that fired well before the command had run for the job's timeout:
    // the worker's deadline starts before its claim round trip, so time spent waiting
    // for the store or stopped before the spawn counts (RELIABILITY.md, "Findings").
    let timeout_us = job["timeout_ms"].as_i64().map(|ms| ms * 1000);
    let early_timeouts: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome == "timed_out")
        .filter_map(|r| {
            let run = runs.iter().find(|run| {
                run.ppid == r.worker_pid.unwrap_or(0) && r.pid.is_none_or(|p| p == run.pid)
            })?;
            let ran = r.finished_us? - run.start_us;
            (ran + EARLY_TIMEOUT_SLACK_US < timeout_us?).then(|| {
                format!(
                    "job {id}: attempt row {} timed out {} ms after its command started (timeout {} ms)",
                    r.token,
                    ran / 1000,
                    timeout_us.unwrap_or(0) / 1000
                )
            })
        })
        .collect();
    let timed_out_early = !early_timeouts.is_empty()
        || rows.iter().any(|r| {
            r.outcome == "timed_out"
                && !runs.iter().any(|run| {
                    run.ppid == r.worker_pid.unwrap_or(0)
                        && run.start_us + SLACK_US >= r.started_us
                        && r.finished_us.is_some_and(|f| run.start_us <= f + SLACK_US)
                })
        });
    summary.early_timeouts.extend(early_timeouts);
    let want = if plan.kind.completes() {
        "completed"
    } else {
        "dead"
    };
    if state != want
        && !(state == "dead" && interruptions >= max)
        && !(state == "dead" && timed_out_early)
    {
        problems.push(format!(
            "job {id} ({:?}) ended {state}, expected {want} (interruptions {interruptions})",
            plan.kind
        ));
    }
    if state == "dead" && plan.kind.completes() && interruptions >= max {
        summary.dead_by_interruptions += 1;
    }

    // Each run matches one attempt row: same worker process, started within it.
    let mut run_of_row: HashMap<i64, &Run> = HashMap::new();
    for run in &runs {
        let found = rows.iter().rev().find(|r| {
            r.worker_pid == Some(run.ppid)
                && r.started_us - SLACK_US <= run.start_us
                && r.finished_us.is_none_or(|f| run.start_us <= f + SLACK_US)
                && r.pid.is_none_or(|p| p == run.pid)
                && !run_of_row.contains_key(&r.token)
        });
        match found {
            Some(row) => {
                run_of_row.insert(row.token, run);
            }
            None => problems.push(format!(
                "job {id}: a run (pid {}, worker {}, attempt {}) has no attempt in the store",
                run.pid, run.ppid, run.attempt
            )),
        }
    }

    // Counters, attempt numbers and exit codes agree with the runs seen.
    let used = rows.iter().filter(|r| r.outcome != "interrupted").count();
    let interrupted = rows.len() - used;
    // A forced stop (second SIGTERM) gives the job back without counting it.
    let forced = rows
        .iter()
        .filter(|r| r.outcome == "interrupted" && r.error.contains(FORCED_STOP))
        .count();
    summary.attempts += used;
    summary.interrupted += interrupted;
    summary.forced_stops += forced;
    let interrupted = interrupted - forced;
    if job["attempts"].as_i64() != Some(used as i64) {
        problems.push(format!(
            "job {id}: attempts {} but {used} attempt rows used one",
            job["attempts"]
        ));
    }
    if interruptions != interrupted as i64 {
        problems.push(format!(
            "job {id}: interruptions {interruptions} but {interrupted} interrupted rows (forced stops aside)"
        ));
    }
    let mut used_before = 0;
    for row in &rows {
        let run = run_of_row.get(&row.token);
        if let Some(run) = run
            && run.attempt != used_before + 1
        {
            problems.push(format!(
                "job {id}: attempt row {} ran as attempt {}, expected {}",
                row.token,
                run.attempt,
                used_before + 1
            ));
        }
        match row.outcome.as_str() {
            "interrupted" => {}
            "succeeded" | "failed" => match run.and_then(|r| r.end) {
                Some((_, code)) if Some(code) == row.exit_code => {}
                other => problems.push(format!(
                    "job {id}: attempt row {} says {} (exit {:?}) but its run {}",
                    row.token,
                    row.outcome,
                    row.exit_code,
                    match other {
                        Some((_, code)) => format!("exited {code}"),
                        None => "has no end mark".into(),
                    }
                )),
            },
            "timed_out" => {
                // Killed before its first line ran: an early timeout (see above).
                if run.is_none() {
                    summary.early_timeouts.push(format!(
                        "job {id}: attempt row {} timed out before its command wrote its start mark",
                        row.token
                    ));
                }
            }
            other => problems.push(format!("job {id}: unexpected outcome {other}")),
        }
        if row.outcome != "interrupted" {
            used_before += 1;
        }
        if row.finished_us.is_none() {
            problems.push(format!(
                "job {id}: attempt row {} never finished",
                row.token
            ));
        }
    }
    if state == "completed" && rows.last().is_none_or(|r| r.outcome != "succeeded") {
        problems.push(format!(
            "job {id}: completed but its last attempt did not succeed"
        ));
    }

    // No two runs overlap (a run without an end mark lasts until its row was closed).
    // Attempt rows whose recorded spans overlap are only reported: on PostgreSQL a
    // claim that waited for the row lock of the recovery releasing the job stamps
    // `started_at` with its transaction's start (`now()`), before that release
    // (RELIABILITY.md, "Findings"); what ran is checked by the runs below.
    for pair in rows.windows(2) {
        if let Some(end) = pair[0].finished_us
            && pair[1].started_us + SLACK_US < end
        {
            summary.row_inversions.push(format!(
                "job {id}: attempt row {} starts {} ms before row {} ends",
                pair[1].token,
                (end - pair[1].started_us) / 1000,
                pair[0].token,
            ));
        }
    }
    let mut spans: Vec<(i64, i64, i64)> = runs
        .iter()
        .map(|run| {
            let row_end = rows
                .iter()
                .find(|r| {
                    run_of_row
                        .get(&r.token)
                        .is_some_and(|x| std::ptr::eq(*x, *run))
                })
                .and_then(|r| r.finished_us);
            let end = run.end.map(|e| e.0).or(row_end).unwrap_or(i64::MAX);
            (run.start_us, end, run.pid)
        })
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if pair[1].0 + SLACK_US < pair[0].1 {
            problems.push(format!(
                "job {id}: runs {} and {} overlap in time ({} ms)",
                pair[0].2,
                pair[1].2,
                (pair[0].1.min(i64::MAX / 2) - pair[1].0) / 1000
            ));
        }
    }

    // A SIGKILLed worker records nothing after its death, and its attempts are
    // released within the bound.
    for row in &rows {
        let Some(wpid) = row.worker_pid else { continue };
        let Some(finished) = row.finished_us else {
            continue;
        };
        for kill in faults.kills.iter().filter(|k| k.pid == wpid) {
            if kill.at_us < row.started_us - SLACK_US || kill.at_us > finished + SLACK_US {
                continue;
            }
            if row.outcome != "interrupted" {
                if finished > kill.at_us + SLACK_US {
                    problems.push(format!(
                        "job {id}: row {} of worker {wpid} finished {} ms after it was SIGKILLed",
                        row.token,
                        (finished - kill.at_us) / 1000
                    ));
                }
                continue;
            }
            let took = finished - kill.at_us;
            summary.interrupted_by_sigkill += 1;
            summary.recoveries_us.push(took);
            let outage: i64 = faults
                .store_faults
                .iter()
                .filter(|(from, to)| *to >= kill.at_us - RECOVERY_BOUND_US && *from <= finished)
                .map(|(from, to)| to - from)
                .sum();
            let near_outage = faults
                .store_faults
                .iter()
                .any(|(from, to)| *to >= kill.at_us - RECOVERY_BOUND_US && *from <= finished);
            let bound = RECOVERY_BOUND_US + if near_outage { SETTLE_US + outage } else { 0 };
            if took > bound {
                problems.push(format!(
                    "job {id}: recovered {} ms after worker {wpid} was SIGKILLed (bound {} ms)",
                    took / 1000,
                    bound / 1000
                ));
            }
        }
    }
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
