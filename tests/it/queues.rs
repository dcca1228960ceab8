//! Queues (issue 11): `--queue` names, `queue pause`/`resume`, `queue list`, and
//! `worker start --queue` serving only some queues. Concurrency limits are in
//! `concurrency.rs`.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, assert_usage_error, holds_for, queue_count, wait_until};

const SETTLE: Duration = Duration::from_secs(30);

/// Runs `queuectl ARGS` for at most [`SETTLE`], killing it if it is still running.
fn run_bounded(env: &Env, args: &[&str]) -> Output {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start queuectl");
    let mut exited = false;
    let deadline = std::time::Instant::now() + SETTLE;
    while !exited && std::time::Instant::now() < deadline {
        exited = child.try_wait().expect("try_wait").is_some();
        std::thread::sleep(Duration::from_millis(20));
    }
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait for queuectl");
    assert!(
        exited,
        "`queuectl {}` was still running after {SETTLE:?}",
        args.join(" ")
    );
    out
}

backend_test!(queue_names_are_checked, |env| {
    let long = "q".repeat(64);
    let odd = env.enqueue_args(&["--queue", "a.B-c_9", "--command", "true"]);
    let longest = env.enqueue_args(&["--queue", &long, "--command", "true"]);
    let from_json = env.enqueue_json(&json!({"command": "true", "queue": "jq"}));
    assert_eq!(env.job(&odd)["queue"], "a.B-c_9");
    assert_eq!(env.job(&longest)["queue"], long.as_str());
    assert_eq!(env.job(&from_json)["queue"], "jq");
    let queues: Vec<Value> = env.jobs().iter().map(|j| j["queue"].clone()).collect();
    assert_eq!(queues, [json!("a.B-c_9"), json!(long), json!("jq")]);

    let before = env.snapshot();
    let too_long = "q".repeat(65);
    for name in ["", "a b", "a/b", "é", "a,b", too_long.as_str()] {
        env.assert_refused(
            &["enqueue", "--queue", name, "--command", "true"],
            "queue",
            &before,
        );
        let job = json!({"command": "true", "queue": name}).to_string();
        env.assert_refused(&["enqueue", &job], "queue", &before);
    }
    env.assert_refused(&["queue", "pause", "a b"], "queue", &before);
    env.assert_refused(&["queue", "concurrency", "a b", "1"], "queue", &before);
    env.assert_refused(&["queue", "concurrency", "q", "many"], "many", &before);
    // Bounded: a worker that accepted the name would run until stopped.
    let out = run_bounded(&env, &["worker", "start", "--queue", "a b"]);
    assert_usage_error(&out, "queue");
    assert_eq!(env.snapshot(), before);
});

backend_test!(a_paused_queue_runs_nothing_until_resumed, |env| {
    env.ok(&["queue", "pause", "q1"]);
    // q1's jobs first and at a higher priority: they would run first if not paused.
    let q1: Vec<String> = (0..3)
        .map(|n| {
            let command = format!("echo {n} >> q1.out");
            env.enqueue_args(&["--queue", "q1", "--priority", "9", "--command", &command])
        })
        .collect();
    let q2: Vec<String> = (0..3)
        .map(|n| env.enqueue_args(&["--queue", "q2", "--command", &format!("echo {n} >> q2.out")]))
        .collect();
    assert_eq!(env.queue_info("q1")["paused"], true);
    env.spawn_workers(&["--count", "2"]);
    for id in &q2 {
        env.wait_state(id, "completed", SETTLE);
    }
    holds_for(
        "q1 running nothing while paused",
        Duration::from_secs(5),
        || env.read("q1.out").is_empty() && q1.iter().all(|id| env.state(id) == "pending"),
    );
    let info = env.queue_info("q1");
    assert_eq!(queue_count(&info, "pending"), 3, "{info}");
    assert_eq!(info["running"], 0, "{info}");
    assert_eq!(env.queue_info("q2")["paused"], false);

    env.ok(&["queue", "resume", "q1"]);
    for id in &q1 {
        env.wait_state(id, "completed", SETTLE);
    }
    assert_eq!(env.read("q1.out").lines().count(), 3);
    assert_eq!(env.queue_info("q1")["paused"], false);
});

backend_test!(pausing_a_queue_leaves_its_running_jobs_alone, |env| {
    let id = env.enqueue_args(&[
        "--queue",
        "slow",
        "--command",
        "touch started; while [ ! -f go ]; do sleep 0.05; done; echo done > finished",
    ]);
    env.spawn_workers(&[]);
    wait_until("the job to start", SETTLE, || env.file("started").exists());
    env.ok(&["queue", "pause", "slow"]);
    let info = env.queue_info("slow");
    assert_eq!(
        (info["paused"].clone(), info["running"].clone()),
        (json!(true), json!(1))
    );
    std::fs::write(env.file("go"), "").unwrap();
    let job = env.wait_state(&id, "completed", SETTLE);
    assert_eq!(job["attempts"], 1, "run once, never stopped: {job}");
    assert_eq!(env.read("finished"), "done\n");
});

backend_test!(queue_list_shows_counts_running_paused_and_limit, |env| {
    env.ok(&["config", "set", "max-retries", "0"]);
    env.enqueue_args(&["--queue", "q2", "--command", "true"]);
    env.enqueue_args(&["--queue", "q2", "--command", "exit 1"]);
    let held = env.enqueue_args(&[
        "--queue",
        "q2",
        "--command",
        "touch started; while [ ! -f go ]; do sleep 0.05; done",
    ]);
    env.ok(&["queue", "pause", "q1"]);
    for _ in 0..2 {
        env.enqueue_args(&["--queue", "q1", "--command", "true"]);
    }
    env.ok(&["queue", "concurrency", "q2", "3"]);
    env.spawn_workers(&["--count", "3", "--queue", "q2"]);
    wait_until("q2's jobs to run", SETTLE, || {
        let info = env.queue_info("q2");
        env.file("started").exists()
            && queue_count(&info, "completed") == 1
            && queue_count(&info, "dead") == 1
    });
    let q1 = env.queue_info("q1");
    let q2 = env.queue_info("q2");
    for (info, state, count) in [
        (&q1, "pending", 2),
        (&q1, "processing", 0),
        (&q1, "completed", 0),
        (&q2, "pending", 0),
        (&q2, "processing", 1),
        (&q2, "completed", 1),
        (&q2, "failed", 0),
        (&q2, "dead", 1),
        (&q2, "cancelled", 0),
    ] {
        assert_eq!(queue_count(info, state), count, "{state} in {info}");
    }
    assert_eq!(
        (&q1["paused"], &q1["running"], &q1["concurrency"]),
        (&json!(true), &json!(0), &Value::Null)
    );
    assert_eq!(
        (&q2["paused"], &q2["running"], &q2["concurrency"]),
        (&json!(false), &json!(1), &json!(3))
    );
    let table = env.ok(&["queue", "list"]);
    for name in ["q1", "q2"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "no row for {name}:\n{table}"
        );
    }
    std::fs::write(env.file("go"), "").unwrap();
    env.wait_state(&held, "completed", SETTLE);
    env.ok(&["queue", "concurrency", "q2", "none"]);
    assert_eq!(env.queue_info("q2")["concurrency"], Value::Null);
});

backend_test!(workers_serve_only_their_queues, |env| {
    // The job of queue c is first in every order: a worker serving all queues
    // would take it first.
    let c = env.enqueue_args(&[
        "--queue",
        "c",
        "--priority",
        "100",
        "--command",
        "echo c >> ran",
    ]);
    let a = env.enqueue_args(&["--queue", "a", "--command", "echo a >> ran"]);
    let b = env.enqueue_args(&["--queue", "b", "--command", "echo b >> ran"]);
    let default = env.enqueue("echo default >> ran");
    env.spawn_workers(&["--queue", "a,b"]);
    env.wait_state(&a, "completed", SETTLE);
    env.wait_state(&b, "completed", SETTLE);
    holds_for(
        "c and default to stay pending",
        Duration::from_secs(1),
        || env.state(&c) == "pending" && env.state(&default) == "pending",
    );
    assert_eq!(env.read("ran"), "a\nb\n");
    // A worker for every queue takes the rest.
    env.spawn_workers(&[]);
    env.wait_state(&c, "completed", SETTLE);
    env.wait_state(&default, "completed", SETTLE);
});
