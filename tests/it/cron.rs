//! Recurring jobs (issue 11): `cron add/list/pause/resume/remove`, bad expressions,
//! and running workers enqueueing each tick exactly once.
//!
//! A real `* * * * *` entry would make a test wait minutes, so the tick tests use
//! the seconds field queuectl accepts only under `QUEUECTL_TEST_CRON_SECONDS=1`
//! (six fields, seconds first), set on `cron add` and on the workers.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Env, assert_error, holds_for, now_ms, parse_time, wait_until};

const SETTLE: Duration = Duration::from_secs(30);
const SECONDS: (&str, &str) = ("QUEUECTL_TEST_CRON_SECONDS", "1");

/// The `cron list --json` entry named `name`, if any.
fn entry(env: &Env, name: &str) -> Option<Value> {
    env.cron_entries().into_iter().find(|e| e["name"] == name)
}

fn next_run_ms(entry: &Value) -> i64 {
    parse_time(
        entry["next_run_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no next_run_at: {entry}")),
    )
}

/// `queuectl cron add ARGS` with the test-only seconds field allowed.
fn cron_add_seconds(env: &Env, args: &[&str]) {
    let mut all = vec!["cron", "add"];
    all.extend_from_slice(args);
    let out = env.cmd(&all).env(SECONDS.0, SECONDS.1).output().unwrap();
    assert!(out.status.success(), "cron add {args:?}: {out:?}");
}

/// The tick of a cron run from its unique key `NAME@TICK`, in Unix ms: the tick may
/// be written as Unix seconds, Unix milliseconds or an RFC 3339 time.
fn tick_ms(name: &str, job: &Value) -> i64 {
    let key = job["unique_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no unique_key: {job}"));
    let tick = key
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('@'))
        .unwrap_or_else(|| panic!("unique_key {key:?} is not {name}@TICK"));
    match tick.parse::<i64>() {
        Ok(n) if n < 100_000_000_000 => n * 1000,
        Ok(n) => n,
        Err(_) => tick
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("tick {tick:?} is not a time: {e}"))
            .as_millisecond(),
    }
}

/// The jobs a cron entry named `name` created, and their ticks (ms) in order.
fn runs(env: &Env, name: &str) -> (Vec<Value>, Vec<i64>) {
    let prefix = format!("{name}@");
    let jobs: Vec<Value> = env
        .jobs()
        .into_iter()
        .filter(|j| {
            j["unique_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&prefix))
        })
        .collect();
    let mut ticks: Vec<i64> = jobs.iter().map(|j| tick_ms(name, j)).collect();
    ticks.sort_unstable();
    (jobs, ticks)
}

fn assert_distinct(ticks: &[i64]) {
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick ran twice: {ticks:?}");
}

backend_test!(entries_are_added_listed_paused_and_removed, |env| {
    env.ok(&[
        "cron",
        "add",
        "every-minute",
        "* * * * *",
        "--",
        "echo",
        "tick",
    ]);
    env.ok(&[
        "cron",
        "add",
        "hourly",
        "@hourly",
        "--tz",
        "UTC",
        "--command",
        "echo hour",
    ]);
    env.ok(&[
        "cron",
        "add",
        "tokyo",
        "0 9 * * *",
        "--tz",
        "Asia/Tokyo",
        "--queue",
        "q",
        "--",
        "true",
    ]);
    let now = now_ms();
    let minute = entry(&env, "every-minute").expect("every-minute is listed");
    let next = next_run_ms(&minute);
    assert!(next > now - 1000 && next <= now + 61_000, "{minute}");
    assert_eq!(next % 60_000, 0, "on a minute: {minute}");
    assert_eq!(minute["schedule"], "* * * * *");
    assert_eq!(minute["paused"], false);
    let hourly = entry(&env, "hourly").expect("hourly is listed");
    assert_eq!(next_run_ms(&hourly) % 3_600_000, 0, "on the hour: {hourly}");
    let tokyo = entry(&env, "tokyo").expect("tokyo is listed");
    assert_eq!(tokyo["tz"], "Asia/Tokyo");
    let tokyo_next = tokyo["next_run_at"].as_str().unwrap();
    assert!(
        tokyo_next.ends_with("T00:00:00.000Z"),
        "09:00 in Tokyo is 00:00 UTC: {tokyo}"
    );
    assert!(next_run_ms(&tokyo) <= now + 86_400_000, "{tokyo}");
    // The human list: one row per entry, with its next run time (in UTC with
    // `--utc`, as HH:MM:SS, with the date when it is not today).
    let table = env.ok(&["cron", "list", "--utc"]);
    let row = table
        .lines()
        .find(|l| l.contains("every-minute"))
        .unwrap_or_else(|| panic!("{table}"));
    let next_text = minute["next_run_at"].as_str().unwrap();
    assert!(
        row.contains(&format!("{}Z", &next_text[11..19])),
        "no next run {next_text} in: {row}"
    );
    assert!(
        table.contains("tokyo") && table.contains("hourly"),
        "{table}"
    );

    env.ok(&["cron", "pause", "every-minute"]);
    assert_eq!(entry(&env, "every-minute").unwrap()["paused"], true);
    env.ok(&["cron", "resume", "every-minute"]);
    assert_eq!(entry(&env, "every-minute").unwrap()["paused"], false);
    env.ok(&["cron", "remove", "every-minute"]);
    assert!(entry(&env, "every-minute").is_none());
    assert_eq!(env.cron_entries().len(), 2);
    for verb in ["remove", "pause", "resume"] {
        assert_error(
            &env.run(&["cron", verb, "no-such-entry"]),
            1,
            "no-such-entry",
        );
    }
    assert!(env.jobs().is_empty(), "adding entries enqueues nothing");
});

backend_test!(bad_cron_entries_are_refused, |env| {
    env.ok(&["cron", "add", "taken", "@daily", "--", "true"]);
    let before = (env.snapshot(), env.cron_entries());
    let cases: &[(&[&str], &str)] = &[
        (&["cron", "add", "x", "* * * *", "--", "true"], "* * * *"),
        (
            &["cron", "add", "x", "61 * * * *", "--", "true"],
            "61 * * * *",
        ),
        (
            &["cron", "add", "x", "* * 32 * *", "--", "true"],
            "* * 32 * *",
        ),
        (
            &["cron", "add", "x", "a b c d e", "--", "true"],
            "a b c d e",
        ),
        (
            &["cron", "add", "x", "@sometimes", "--", "true"],
            "@sometimes",
        ),
        (&["cron", "add", "x", "", "--", "true"], "cron"),
        // Seconds are for tests only.
        (
            &["cron", "add", "x", "*/2 * * * * *", "--", "true"],
            "*/2 * * * * *",
        ),
        (
            &[
                "cron",
                "add",
                "x",
                "* * * * *",
                "--tz",
                "Mars/Olympus",
                "--",
                "true",
            ],
            "Mars/Olympus",
        ),
        (&["cron", "add", "x", "* * * * *"], "command"),
        (
            &[
                "cron",
                "add",
                "x",
                "* * * * *",
                "--priority",
                "5000",
                "--",
                "true",
            ],
            "priority",
        ),
        (
            &["cron", "add", "taken", "* * * * *", "--", "true"],
            "taken",
        ),
    ];
    for (args, needle) in cases {
        let out = env.run(args);
        crate::common::assert_usage_error(&out, needle);
        assert_eq!(
            (env.snapshot(), env.cron_entries()),
            before,
            "{args:?} changed the store"
        );
    }
});

backend_test!(three_worker_processes_enqueue_each_tick_once, |env| {
    for _ in 0..3 {
        env.spawn_workers_with(&["--count", "2"], &[SECONDS]);
    }
    env.wait_live_workers(3, SETTLE);
    cron_add_seconds(
        &env,
        &[
            "tick",
            "*/2 * * * * *",
            "--priority",
            "7",
            "--queue",
            "crons",
            "--",
            "echo",
            "tick",
        ],
    );
    // Let it run for four ticks (about 8 s).
    wait_until("four cron runs", SETTLE, || runs(&env, "tick").0.len() >= 4);
    env.ok(&["cron", "pause", "tick"]);
    let (jobs, ticks) = runs(&env, "tick");
    assert_distinct(&ticks);
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 2000, "ticks are consecutive: {ticks:?}");
    }
    for job in &jobs {
        assert_eq!(
            (
                job["command"].as_str(),
                job["priority"].as_i64(),
                job["queue"].as_str()
            ),
            (Some("echo tick"), Some(7), Some("crons")),
            "{job}"
        );
    }
    for job in &jobs {
        env.wait_state(job["id"].as_str().unwrap(), "completed", SETTLE);
    }
    // Paused: at most a run already being enqueued at the pause, then nothing.
    let paused_at = jobs.len();
    holds_for(
        "a paused entry to enqueue nothing",
        Duration::from_secs(4),
        || runs(&env, "tick").0.len() <= paused_at + 1,
    );
    let settled = runs(&env, "tick").0.len();
    holds_for(
        "a paused entry to enqueue nothing",
        Duration::from_secs(3),
        || runs(&env, "tick").0.len() == settled,
    );
    env.ok(&["cron", "resume", "tick"]);
    wait_until("a run after resume", SETTLE, || {
        runs(&env, "tick").0.len() > settled
    });
    assert_distinct(&runs(&env, "tick").1);
});

backend_test!(
    after_downtime_one_catch_up_run_not_one_per_missed_tick,
    |env| {
        env.ensure_store();
        cron_add_seconds(&env, &["often", "* * * * * *", "--", "true"]);
        // No worker: several ticks go by and nothing is enqueued.
        holds_for(
            "nothing to be enqueued without workers",
            Duration::from_secs(4),
            || runs(&env, "often").0.is_empty(),
        );
        let started = now_ms();
        env.spawn_workers_with(&[], &[SECONDS]);
        wait_until("runs after the workers start", SETTLE, || {
            runs(&env, "often").0.len() >= 2
        });
        let (_, ticks) = runs(&env, "often");
        assert_distinct(&ticks);
        // At least four ticks were missed; one catch-up run at most stands for them.
        let missed = ticks.iter().filter(|&&t| t < started).count();
        assert!(
            missed <= 1,
            "{missed} runs for ticks missed while down: {ticks:?}"
        );
    }
);
