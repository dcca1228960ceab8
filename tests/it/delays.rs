//! Delayed jobs (issue 11): `--delay` and `--run-at` (RFC 3339 or local time), never
//! started early, started within a second of their time, shown by `list`.
//!
//! Each job records when it started with `date +%s%N`; that is compared with the
//! `run_at` the store reports. The contract is "within 1 s"; the tests allow 1.5 s
//! because a loaded 2-core machine adds the time to fork a shell and run `date`.

use std::time::Duration;

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use serde_json::json;

use crate::common::{Env, ns_time, parse_time};

const SETTLE: Duration = Duration::from_secs(30);
/// How late a delayed job may start: the contract's 1 s plus slack for a loaded machine.
const ON_TIME_NS: i128 = 1_500_000_000;

/// A job that writes its start time (ns) to `file`.
fn stamp(file: &str) -> String {
    format!("date +%s%N > {file}")
}

/// Waits for the job that writes `file` to start; checks it started at or after
/// `run_at_ms` and at most [`ON_TIME_NS`] later.
fn assert_started_on_time(env: &Env, file: &str, run_at_ms: i64) {
    let mut started = None;
    wait_start(env, file, &mut started);
    let started = started.unwrap();
    let due = i128::from(run_at_ms) * 1_000_000;
    assert!(
        started >= due,
        "{file}: started {} ms before its time",
        (due - started) as f64 / 1e6
    );
    assert!(
        started - due <= ON_TIME_NS,
        "{file}: started {} ms after its time",
        (started - due) as f64 / 1e6
    );
}

fn wait_start(env: &Env, file: &str, started: &mut Option<i128>) {
    crate::common::wait_until(&format!("the job writing {file} to start"), SETTLE, || {
        *started = ns_time(&env.read(file));
        started.is_some()
    });
}

/// The ms time in a job's `run_at`.
fn run_at(env: &Env, id: &str) -> i64 {
    let job = env.job(id);
    parse_time(
        job["run_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no run_at: {job}")),
    )
}

fn start_worker(env: &mut Env) {
    env.spawn_workers(&["--count", "2"]);
    env.wait_live_workers(1, SETTLE);
}

backend_test!(a_delayed_job_never_starts_early_and_starts_on_time, |env| {
    start_worker(&mut env);
    let id = env.enqueue_args(&["--delay", "2s", "--command", &stamp("delay.start")]);
    let job = env.job(&id);
    assert_eq!(job["state"], "pending");
    let due = run_at(&env, &id);
    let created = parse_time(job["created_at"].as_str().unwrap());
    assert!(
        (1500..=2500).contains(&(due - created)),
        "run_at {due} is not 2 s after created_at {created}: {job}"
    );
    assert_eq!(job["next_run_at"], job["run_at"], "it waits for run_at");
    // The JSON form, with a delay of its own, and a ready job that overtakes both.
    let from_json = env.enqueue_json(&json!({"command": stamp("json.start"), "delay": "3s"}));
    let json_due = run_at(&env, &from_json);
    assert_eq!(env.state(&from_json), "pending");
    let ready = env.enqueue("true");
    env.wait_state(&ready, "completed", SETTLE);
    assert_started_on_time(&env, "delay.start", due);
    assert_started_on_time(&env, "json.start", json_due);
    env.wait_state(&id, "completed", SETTLE);
    env.wait_state(&from_json, "completed", SETTLE);
});

backend_test!(run_at_takes_rfc3339_and_local_times, |env| {
    start_worker(&mut env);
    let now = Timestamp::now();
    // RFC 3339 with an offset (+02:00), whole seconds, 3 s ahead.
    let target = Timestamp::from_second(now.as_second() + 3).unwrap();
    let plus_two = TimeZone::fixed(jiff::tz::offset(2));
    let rfc = target
        .to_zoned_datetime(plus_two)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let rfc_id = env.enqueue_args(&["--run-at", &rfc, "--command", &stamp("rfc.start")]);
    assert_eq!(run_at(&env, &rfc_id), target.as_millisecond(), "{rfc}");
    // Local time without an offset, read in the zone of the `enqueue` process.
    let tokyo = TimeZone::get("Asia/Tokyo").expect("tzdata has Asia/Tokyo");
    let local_target = Timestamp::from_second(now.as_second() + 4).unwrap();
    let local = local_target
        .to_zoned_datetime(tokyo)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let out = env
        .cmd(&[
            "enqueue",
            "--run-at",
            &local,
            "--command",
            &stamp("local.start"),
        ])
        .env("TZ", "Asia/Tokyo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let local_id = crate::common::enqueued_id(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        run_at(&env, &local_id),
        local_target.as_millisecond(),
        "{local}"
    );
    // A past time, local and without seconds, means now.
    let out = env
        .cmd(&[
            "enqueue",
            "--run-at",
            "2020-01-02 03:04",
            "--command",
            "true",
        ])
        .env("TZ", "Asia/Tokyo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let past_id = crate::common::enqueued_id(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(env.job(&past_id)["run_at"], "2020-01-01T18:04:00.000Z");
    let past_utc = env.enqueue_args(&["--run-at", "2021-06-01T00:00:00Z", "--command", "true"]);
    env.wait_state(&past_id, "completed", SETTLE);
    env.wait_state(&past_utc, "completed", SETTLE);
    assert_started_on_time(&env, "rfc.start", target.as_millisecond());
    assert_started_on_time(&env, "local.start", local_target.as_millisecond());
});

backend_test!(list_shows_when_a_waiting_job_will_run, |env| {
    let later = env.enqueue_args(&["--run-at", "2099-01-02T03:04:05Z", "--command", "true"]);
    let soon = env.enqueue_args(&["--delay", "1h", "--priority", "1000", "--command", "true"]);
    let row = env.list_row(&later);
    assert!(
        row.contains("2099-01-02 03:04:05Z"),
        "no run time in: {row}"
    );
    let next = env.job(&soon)["next_run_at"].as_str().unwrap().to_owned();
    let row = env.list_row(&soon);
    let time = format!("{}Z", &next[11..19]);
    assert!(row.contains(&time), "no run time {next} in: {row}");
    // Waiting jobs, even at the top priority, do not hold up a ready one.
    let ready = env.enqueue("true");
    start_worker(&mut env);
    env.wait_state(&ready, "completed", SETTLE);
    assert_eq!(env.state(&later), "pending");
    assert_eq!(env.state(&soon), "pending");
    let waiting = env.json(&["list", "--state", "pending"]);
    assert_eq!(waiting.as_array().map(Vec::len), Some(2));
});

backend_test!(run_at_and_delay_are_checked, |env| {
    env.enqueue("true");
    let before = env.snapshot();
    let soon = (Timestamp::now() + 1.hour()).to_string();
    for (args, needle) in [
        (
            &[
                "enqueue",
                "--run-at",
                &soon,
                "--delay",
                "2s",
                "--command",
                "true",
            ][..],
            "delay",
        ),
        (&["enqueue", "--delay", "soon", "--command", "true"], "soon"),
        (&["enqueue", "--delay=-5s", "--command", "true"], "delay"),
        (
            &["enqueue", "--run-at", "tomorrow", "--command", "true"],
            "tomorrow",
        ),
        (
            &[
                "enqueue",
                "--run-at",
                "2030-13-01 00:00",
                "--command",
                "true",
            ],
            "2030-13-01",
        ),
    ] {
        env.assert_refused(args, needle, &before);
    }
    let both = json!({"command": "true", "run_at": soon, "delay": "2s"}).to_string();
    env.assert_refused(&["enqueue", &both], "delay", &before);
    let bad = json!({"command": "true", "run_at": "someday"}).to_string();
    env.assert_refused(&["enqueue", &bad], "someday", &before);
});
