//! Running a command: success, its directory, its output, what counts as a failure,
//! and a backgrounded grandchild that must not make the job look hung.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::parse_time;

backend_test!(a_basic_job_completes, |env| {
    let id = env.enqueue("echo hello; echo to-stderr >&2");
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(&id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["exit_code"], 0);
    let tail = job["output_tail"].as_str().unwrap_or_default();
    assert!(
        tail.contains("hello") && tail.contains("to-stderr"),
        "output kept: {tail:?}"
    );
    let history = job["history"].as_array().expect("history");
    assert_eq!(history.len(), 1);
    let created = parse_time(job["created_at"].as_str().unwrap());
    let updated = parse_time(job["updated_at"].as_str().unwrap());
    assert!(updated >= created);
    // The worker logs one line when the job starts and one when it ends.
    let log = env.read("worker-1.log");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(
        lines.len(),
        2,
        "one start and one end line for the job: {log}"
    );
    let status = env.status();
    assert_eq!(status["completed"], 1);
    assert_eq!(status["pending"], 0);
    assert_eq!(status["processing"], 0);
});

backend_test!(the_job_runs_in_the_directory_it_was_enqueued_from, |env| {
    let sub = env.file("some dir/deeper");
    std::fs::create_dir_all(&sub).unwrap();
    let out = env
        .cmd_in(&sub, &["enqueue", "--command", "pwd > where.txt"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let written = std::fs::read_to_string(sub.join("where.txt"))
        .expect("the job wrote where.txt in its directory");
    assert_eq!(
        std::fs::canonicalize(written.trim()).unwrap(),
        std::fs::canonicalize(&sub).unwrap()
    );
    assert!(
        !env.file("where.txt").exists(),
        "not in the worker's directory"
    );
});

backend_test!(exit_127_and_death_by_signal_are_failures, |env| {
    let missing =
        env.enqueue_json(&json!({"command": "no-such-command-queuectl-test", "max_retries": 0}));
    let exit3 = env.enqueue_json(&json!({"command": "exit 3", "max_retries": 0}));
    let killed = env.enqueue_json(&json!({"command": "kill -9 $$", "max_retries": 0}));
    let ok = env.enqueue_json(&json!({"command": "true", "max_retries": 0}));
    let pid = env.spawn_workers(&["--burst", "--count", "2"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    assert_eq!(env.state(&ok), "completed");
    let job = env.job(&missing);
    assert_eq!(job["state"], "dead", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["exit_code"], 127);
    let job = env.job(&exit3);
    assert_eq!(job["state"], "dead", "{job}");
    assert_eq!(job["exit_code"], 3);
    let job = env.job(&killed);
    assert_eq!(job["state"], "dead", "{job}");
    assert_eq!(job["attempts"], 1);
    let error = job["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("signal") || error.contains("sigkill") || error.contains('9'),
        "{job}"
    );
});

backend_test!(
    a_backgrounded_grandchild_does_not_make_the_job_hang,
    |env| {
        let id = env.enqueue("sleep 60 & echo $$ > bg.pgid; echo done");
        let start = Instant::now();
        env.spawn_workers(&[]);
        let job = env.wait_state(&id, "completed", Duration::from_secs(20));
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(
            job["output_tail"]
                .as_str()
                .unwrap_or_default()
                .contains("done"),
            "{job}"
        );
    }
);

backend_test!(output_tail_keeps_the_end_of_long_output, |env| {
    let id =
        env.enqueue("i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo the-end");
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let tail = env.job(&id)["output_tail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        tail.trim_end().ends_with("the-end"),
        "tail: {}",
        &tail[tail.len().saturating_sub(100)..]
    );
    assert!(
        tail.len() < 64 * 1024,
        "only the last few KiB are kept, got {} bytes",
        tail.len()
    );
});
