//! Unique jobs (issue 11): while a job with a key is unfinished, enqueueing the key
//! again creates nothing, prints `Exists: ID` (JSON: the job plus `"duplicate": true`)
//! and exits 0, also for many processes enqueueing at once.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(30);

backend_test!(eight_processes_enqueueing_one_key_create_one_job, |env| {
    env.ensure_store();
    let children: Vec<_> = (0..8)
        .map(|n| {
            let command = format!("echo {n}");
            env.cmd(&["enqueue", "--unique-key", "k", "--command", &command])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start enqueue")
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait for enqueue");
            assert_eq!(out.status.code(), Some(0), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    let created: Vec<&str> = outputs
        .iter()
        .filter_map(|o| o.strip_prefix("Enqueued: "))
        .collect();
    assert_eq!(created.len(), 1, "exactly one job created: {outputs:?}");
    let id = created[0];
    let existing = outputs
        .iter()
        .filter(|o| o.strip_prefix("Exists: ") == Some(id))
        .count();
    assert_eq!(existing, 7, "the others name the same job: {outputs:?}");
    let jobs = env.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["unique_key"], "k");
});

backend_test!(a_duplicate_names_the_job_until_it_is_finished, |env| {
    let first = env.enqueue_args(&["--unique-key", "nightly", "--command", "echo run >> runs"]);
    assert_eq!(env.job(&first)["unique_key"], "nightly");
    let before = env.snapshot();
    let out = env.ok(&[
        "enqueue",
        "--unique-key",
        "nightly",
        "--command",
        "echo other",
    ]);
    assert_eq!(out, format!("Exists: {first}\n"));
    let json_form = json!({"command": "echo other", "unique_key": "nightly"}).to_string();
    assert_eq!(
        env.ok(&["enqueue", &json_form]),
        format!("Exists: {first}\n")
    );
    let out = env.ok(&[
        "enqueue",
        "--json",
        "--unique-key",
        "nightly",
        "--command",
        "x",
    ]);
    let dup: Value = serde_json::from_str(&out).expect("enqueue --json is JSON");
    assert_eq!(dup["id"], first.as_str());
    assert_eq!(dup["duplicate"], true);
    assert_eq!(
        dup["command"], "echo run >> runs",
        "the existing job, not the new one"
    );
    assert_eq!(env.snapshot(), before, "a duplicate creates nothing");
    // Another key is another job; a new job created with --json is no duplicate.
    let out = env.ok(&[
        "enqueue",
        "--json",
        "--unique-key",
        "other",
        "--command",
        "true",
    ]);
    let other: Value = serde_json::from_str(&out).expect("enqueue --json is JSON");
    assert_ne!(other["id"], first.as_str());
    assert_ne!(other["duplicate"], true);

    // Once the job is finished the key is free again.
    let worker = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(worker, SETTLE), Some(0));
    assert_eq!(env.state(&first), "completed");
    let second = env.enqueue_args(&["--unique-key", "nightly", "--command", "echo run >> runs"]);
    assert_ne!(second, first);
    // A cancelled job frees its key too.
    env.ok(&["cancel", &second]);
    let third = env.enqueue_args(&["--unique-key", "nightly", "--command", "echo run >> runs"]);
    assert_ne!(third, second);
    let worker = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(worker, SETTLE), Some(0));
    assert_eq!(env.read("runs"), "run\nrun\n");
});

backend_test!(a_failed_job_waiting_to_retry_still_holds_its_key, |env| {
    env.ok(&["config", "set", "backoff-base", "60"]);
    let id = env.enqueue_args(&[
        "--unique-key",
        "k",
        "--max-retries",
        "1",
        "--command",
        "exit 1",
    ]);
    env.spawn_workers(&[]);
    env.wait_state(&id, "failed", SETTLE);
    assert_eq!(
        env.ok(&["enqueue", "--unique-key", "k", "--command", "true"]),
        format!("Exists: {id}\n")
    );
    assert_eq!(env.jobs().len(), 1);
});
