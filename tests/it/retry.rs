//! Retries with exponential backoff, the `failed` state in between, and the dead
//! letter queue once attempts are used up. Timings are checked from the outside (wall
//! clock) and, more precisely, from the per-attempt `history` timestamps.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{now_ms, parse_time, wait_until};

/// The gaps, in seconds, between one attempt's end and the next one's start.
fn gaps(job: &Value) -> Vec<f64> {
    let history = job["history"]
        .as_array()
        .expect("show --json has a history array");
    history
        .windows(2)
        .map(|w| {
            let finished = parse_time(w[0]["finished_at"].as_str().expect("finished_at"));
            let started = parse_time(w[1]["started_at"].as_str().expect("started_at"));
            (started - finished) as f64 / 1000.0
        })
        .collect()
}

/// Asserts each gap is at least the backoff (minus clock rounding) and not absurdly late.
fn assert_gaps(job: &Value, expected: &[f64]) {
    let got = gaps(job);
    assert_eq!(got.len(), expected.len(), "history: {}", job["history"]);
    for (g, e) in got.iter().zip(expected) {
        assert!(
            *g >= e - 0.1,
            "retried too early: gap {g:.3}s, backoff {e}s; gaps {got:?}"
        );
        assert!(
            *g < e + 4.0,
            "retried far too late: gap {g:.3}s, backoff {e}s; gaps {got:?}"
        );
    }
}

backend_test!(failing_job_backs_off_then_goes_dead, |env| {
    let id = env.enqueue_json(
        &json!({"command": "echo attempt >> attempts.txt; exit 7", "max_retries": 2}),
    );
    let start = Instant::now();
    env.spawn_workers(&[]);
    // After the first failure the job waits in `failed` with a next_run_at ~2 s ahead.
    let job = env.wait_state(&id, "failed", Duration::from_secs(10));
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["exit_code"], 7);
    let next = parse_time(
        job["next_run_at"]
            .as_str()
            .expect("failed job has next_run_at"),
    );
    let updated = parse_time(job["updated_at"].as_str().unwrap());
    let delay = (next - updated) as f64 / 1000.0;
    assert!(
        (1.9..=2.5).contains(&delay),
        "first backoff should be 2 s, next_run_at is {delay}s after the failure"
    );
    let job = env.wait_state(&id, "dead", Duration::from_secs(30));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(5500),
        "dead too soon: {elapsed:?} (backoffs 2 s + 4 s)"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "dead too late: {elapsed:?}"
    );
    assert_eq!(job["attempts"], 3, "max_retries 2 means 1 + 2 runs");
    assert_eq!(env.read("attempts.txt").lines().count(), 3);
    assert!(
        job["last_error"].is_string(),
        "dead job keeps its last error: {job}"
    );
    assert_gaps(&job, &[2.0, 4.0]);
    // It is in the DLQ, with its last error.
    let dlq = env.json(&["dlq", "list"]);
    let dead: Vec<&Value> = dlq.as_array().unwrap().iter().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], id.as_str());
    assert!(dead[0]["last_error"].is_string());
    let table = env.ok(&["dlq", "list"]);
    assert!(table.contains(&id), "{table}");
    assert_eq!(env.status()["dead"], 1);
});

backend_test!(max_retries_zero_goes_dead_after_one_run, |env| {
    let id = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 0}));
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(&id);
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["history"].as_array().unwrap().len(), 1);
});

backend_test!(a_retry_that_succeeds_completes, |env| {
    // Fails the first time, succeeds the second.
    let id = env.enqueue_json(&json!({
        "command": "if [ -e flag ]; then echo second; else touch flag; exit 1; fi",
        "max_retries": 3
    }));
    env.ok(&["config", "set", "backoff-base", "1"]);
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(
        env.wait_worker(pid, Duration::from_secs(30)),
        Some(0),
        "--burst waits out the retry"
    );
    let job = env.job(&id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 2);
    assert_gaps(&job, &[1.0]);
});

backend_test!(decimal_backoff_base, |env| {
    let out = env.ok(&["config", "set", "backoff-base", "1.5"]);
    assert!(out.contains("1.5"), "{out}");
    assert_eq!(env.ok(&["config", "get", "backoff-base"]).trim(), "1.5");
    assert_eq!(env.json(&["config", "list"])["backoff-base"], 1.5);
    let id = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 2}));
    env.spawn_workers(&[]);
    let job = env.wait_state(&id, "dead", Duration::from_secs(30));
    assert_eq!(job["attempts"], 3);
    assert_gaps(&job, &[1.5, 2.25]);
});

backend_test!(backoff_base_is_read_when_the_failure_happens, |env| {
    // Enqueued under base 2, but the base is 1.5 by the time it fails.
    let id = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 1}));
    env.ok(&["config", "set", "backoff-base", "1.5"]);
    env.spawn_workers(&[]);
    let job = env.wait_state(&id, "dead", Duration::from_secs(30));
    assert_gaps(&job, &[1.5]);
});

backend_test!(backoff_max_caps_the_delay, |env| {
    env.ok(&["config", "set", "backoff-base", "10"]);
    env.ok(&["config", "set", "backoff-max", "1"]);
    let id = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 2}));
    let start = Instant::now();
    env.spawn_workers(&[]);
    let job = env.wait_state(&id, "dead", Duration::from_secs(30));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "10 s and 100 s capped to 1 s each"
    );
    assert_gaps(&job, &[1.0, 1.0]);
});

backend_test!(a_failed_job_is_not_claimed_before_its_time, |env| {
    env.ok(&["config", "set", "backoff-base", "5"]);
    let id = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 1}));
    env.spawn_workers(&["--count", "3"]);
    let job = env.wait_state(&id, "failed", Duration::from_secs(10));
    let next = parse_time(job["next_run_at"].as_str().unwrap());
    // Until next_run_at, the job stays failed with one attempt, whatever the idle workers do.
    wait_until("the backoff to pass", Duration::from_secs(15), || {
        let job = env.job(&id);
        if now_ms() < next - 200 {
            assert_eq!(job["state"], "failed", "claimed before next_run_at: {job}");
            assert_eq!(job["attempts"], 1);
        }
        now_ms() > next
    });
    env.wait_state(&id, "dead", Duration::from_secs(15));
});
