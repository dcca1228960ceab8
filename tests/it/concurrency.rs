//! Queue concurrency limits (issue 11): `queue concurrency NAME N` holds across every
//! worker process on the store, and `none` lifts it. Overlap is measured from the
//! start and end marks the jobs write themselves (`S <ns>` / `E <ns>` lines).

use std::time::Duration;

use serde_json::Value;

use crate::common::{marked, max_overlap};

const SETTLE: Duration = Duration::from_secs(60);

backend_test!(a_limit_of_one_holds_across_two_worker_processes, |env| {
    env.ok(&["config", "set", "max-retries", "0"]);
    env.ok(&["queue", "concurrency", "q", "1"]);
    assert_eq!(env.queue_info("q")["concurrency"], 1);
    let ids: Vec<String> = (0..12)
        .map(|_| env.enqueue_args(&["--queue", "q", "--command", &marked("marks", "sleep 0.2")]))
        .collect();
    // Other queues are not held back by q's limit.
    let other: Vec<String> = (0..3)
        .map(|_| {
            env.enqueue_args(&[
                "--queue",
                "other",
                "--command",
                &marked("other", "sleep 0.2"),
            ])
        })
        .collect();
    env.spawn_workers(&["--count", "4"]);
    env.spawn_workers(&["--count", "4"]);
    for id in ids.iter().chain(&other) {
        env.wait_state(id, "completed", SETTLE);
    }
    let marks = env.read("marks");
    assert_eq!(
        marks.lines().count(),
        24,
        "a start and an end per job:\n{marks}"
    );
    assert_eq!(
        max_overlap(&marks),
        1,
        "more than one of q's jobs ran at once:\n{marks}"
    );
    assert_eq!(env.read("other").lines().count(), 6);
});

backend_test!(none_lifts_the_limit, |env| {
    env.ok(&["config", "set", "max-retries", "0"]);
    env.ok(&["queue", "concurrency", "q", "1"]);
    env.ok(&["queue", "concurrency", "q", "none"]);
    assert_eq!(env.queue_info("q")["concurrency"], Value::Null);
    // Each job waits (up to 30 s) until all four have started: they can only
    // complete if four of q's jobs run at once.
    let barrier = "echo x >> started; i=0; \
                   while [ \"$(wc -l < started)\" -lt 4 ]; do \
                   i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done";
    let ids: Vec<String> = (0..4)
        .map(|_| env.enqueue_args(&["--queue", "q", "--command", barrier]))
        .collect();
    env.spawn_workers(&["--count", "4"]);
    for id in &ids {
        env.wait_state(id, "completed", SETTLE);
    }
    // And a new limit holds again.
    env.ok(&["queue", "concurrency", "q", "2"]);
    let more: Vec<String> = (0..6)
        .map(|_| env.enqueue_args(&["--queue", "q", "--command", &marked("marks", "sleep 0.2")]))
        .collect();
    for id in &more {
        env.wait_state(id, "completed", SETTLE);
    }
    assert!(
        max_overlap(&env.read("marks")) <= 2,
        "{}",
        env.read("marks")
    );
});
