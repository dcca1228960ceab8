//! The checker's own tests: it must catch what it is there to catch, so each case
//! breaks one guarantee in an otherwise clean record and expects that violation.

use super::*;
use crate::driver::Kill;
use crate::workload::Kind;
use serde_json::json;

const T0: i64 = 1_764_000_000_000; // ms

fn at(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(T0 + ms)
        .expect("valid time")
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn row(token: i64, worker: u32, from: i64, to: i64, outcome: &str, code: Option<i64>) -> Value {
    json!({"attempt_token": token, "worker": format!("vm-{worker}-1"),
           "started_at": at(from), "finished_at": at(to), "outcome": outcome,
           "exit_code": code, "error": if outcome == "interrupted" { "interrupted: worker died" } else { "" }})
}

fn job(state: &str, attempts: i64, interruptions: i64, rows: Vec<Value>) -> String {
    json!({"id": "quick-1", "state": state, "attempts": attempts,
           "interruptions": interruptions, "attempts_history": rows})
    .to_string()
}

/// A start (and end, if `end` is given) mark at ms offsets.
fn run(attempt: i64, pid: i64, worker: u32, start: i64, end: Option<(i64, i64)>) -> String {
    let ns = |ms: i64| (T0 + ms) * 1_000_000;
    let mut text = format!("S quick-1 {attempt} {pid} {worker} {}\n", ns(start));
    if let Some((e, code)) = end {
        text += &format!("E quick-1 {attempt} {pid} {worker} {} {code}\n", ns(e));
    }
    text
}

fn problems(export: &str, log: &str, faults: &Faults) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("runs.log");
    std::fs::write(&path, log).expect("write log");
    let plans = [Plan {
        id: "quick-1".into(),
        kind: Kind::Quick,
    }];
    check(&plans, export, &path, faults).1
}

/// Worker 100 runs attempt 1 and is SIGKILLed at 500 ms; worker 200 recovers the
/// job at 900 ms and runs it to success.
fn killed_then_completed() -> (Vec<Value>, String, Faults) {
    let rows = vec![
        row(1, 100, 0, 900, "interrupted", None),
        row(2, 200, 950, 1200, "succeeded", Some(0)),
    ];
    let log = run(1, 11, 100, 10, None) + &run(1, 22, 200, 960, Some((1190, 0)));
    let faults = Faults {
        kills: vec![Kill {
            pid: 100,
            at_us: (T0 + 500) * 1000,
        }],
        ..Faults::default()
    };
    (rows, log, faults)
}

#[test]
fn a_clean_record_passes() {
    let (rows, log, faults) = killed_then_completed();
    assert_eq!(
        problems(&job("completed", 1, 1, rows), &log, &faults),
        Vec::<String>::new()
    );
}

#[test]
fn overlapping_runs_are_caught() {
    let (rows, _, faults) = killed_then_completed();
    // The killed attempt's run went on (no end mark, but its row closes late).
    let mut rows = rows;
    rows[0] = row(1, 100, 0, 1000, "interrupted", None);
    let log = run(1, 11, 100, 10, None) + &run(1, 22, 200, 960, Some((1190, 0)));
    let found = problems(&job("completed", 1, 1, rows), &log, &faults);
    assert!(
        found.iter().any(|p| p.contains("runs 11 and 22 overlap")),
        "{found:?}"
    );
}

#[test]
fn a_run_the_store_does_not_know_is_caught() {
    let (rows, log, faults) = killed_then_completed();
    let log = log + &run(1, 33, 300, 970, Some((1000, 0)));
    let found = problems(&job("completed", 1, 1, rows), &log, &faults);
    assert!(
        found.iter().any(|p| p.contains("has no attempt")),
        "{found:?}"
    );
}

#[test]
fn a_completed_job_whose_last_run_failed_is_caught() {
    let (rows, _, faults) = killed_then_completed();
    let log = run(1, 11, 100, 10, None) + &run(1, 22, 200, 960, Some((1190, 1)));
    let found = problems(&job("completed", 1, 1, rows), &log, &faults);
    assert!(found.iter().any(|p| p.contains("exited 1")), "{found:?}");
}

#[test]
fn lost_and_stuck_jobs_and_wrong_counters_are_caught() {
    let (rows, log, faults) = killed_then_completed();
    let found = problems("", &log, &faults);
    assert!(found.iter().any(|p| p.contains("lost")), "{found:?}");
    let found = problems(&job("processing", 1, 1, rows.clone()), &log, &faults);
    assert!(found.iter().any(|p| p.contains("stuck")), "{found:?}");
    let found = problems(&job("completed", 1, 0, rows), &log, &faults);
    assert!(
        found.iter().any(|p| p.contains("interruptions 0")),
        "{found:?}"
    );
}

#[test]
fn slow_recovery_is_caught() {
    let (mut rows, log, faults) = killed_then_completed();
    rows[0] = row(1, 100, 0, 500 + 13_500, "interrupted", None);
    rows[1] = row(2, 200, 14_100, 14_300, "succeeded", Some(0));
    let log = log.replace(
        &format!("{}", (T0 + 960) * 1_000_000),
        &format!("{}", (T0 + 14_110) * 1_000_000),
    );
    let log = log.replace(
        &format!("{}", (T0 + 1190) * 1_000_000),
        &format!("{}", (T0 + 14_290) * 1_000_000),
    );
    let found = problems(&job("completed", 1, 1, rows), &log, &faults);
    assert!(
        found.iter().any(|p| p.contains("recovered 13500 ms")),
        "{found:?}"
    );
}
