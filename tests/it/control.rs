//! Controlling queued jobs (issue 10): `cancel`, `retry`, `clean`, retention, and
//! the attempt facts `show` reports.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_error, assert_usage_error, process_alive, wait_until};

const SETTLE: Duration = Duration::from_secs(30);

fn pid_in(env: &crate::common::Env, name: &str) -> Option<i64> {
    env.read(name).trim().parse().ok()
}

backend_test!(cancel_kills_a_running_job_and_its_grandchild, |env| {
    env.ok(&["config", "set", "kill-grace", "1"]);
    // Ignores SIGTERM (inherited by what it starts) and leaves a background child.
    let id = env.enqueue(
        "trap '' TERM; echo run >> runs; sleep 60 & echo $! > child.pid; echo $$ > shell.pid; wait",
    );
    env.spawn_workers(&[]);
    wait_until("the job and its child to start", SETTLE, || {
        pid_in(&env, "shell.pid").is_some() && pid_in(&env, "child.pid").is_some()
    });
    let (shell, child) = (
        pid_in(&env, "shell.pid").unwrap(),
        pid_in(&env, "child.pid").unwrap(),
    );
    let cancelled_at = Instant::now();
    let out = env.ok(&["cancel", &id]);
    assert_eq!(
        out,
        format!("Cancelling: {id} (running; its worker stops it)\n")
    );
    // kill-grace 1 s, plus 2 s for the worker to see the request and reap.
    wait_until(
        "every process of the job to be gone",
        Duration::from_secs(3),
        || !process_alive(shell) && !process_alive(child),
    );
    let job = env.wait_state(&id, "cancelled", SETTLE);
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    let outcomes: Vec<&str> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["cancelled"]);
    // Never run again: a later job runs to the end while this one stays cancelled.
    let later = env.enqueue("true");
    env.wait_state(&later, "completed", SETTLE);
    assert_eq!(env.state(&id), "cancelled");
    assert_eq!(env.read("runs"), "run\n");
});

backend_test!(cancel_of_a_pending_job_is_at_once, |env| {
    let id = env.enqueue("echo never");
    let out = env.ok(&["cancel", &id]);
    assert_eq!(out, format!("Cancelled: {id}\n"));
    assert_eq!(env.state(&id), "cancelled");
    let listed = env.json(&["list", "--state", "cancelled"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(env.status()["cancelled"], 1);
    assert!(env.ok(&["status"]).contains("cancelled"));
});

backend_test!(cancel_refuses_unknown_and_finished_ids_whole, |env| {
    let pending = env.enqueue("echo later");
    let done = env.enqueue("echo done");
    env.ok(&["cancel", &done]);
    let before = env.snapshot();
    let out = env.run(&["cancel", &pending, "no-such-job", &done]);
    assert_error(&out, 1, "no-such-job");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&done),
        "{out:?}"
    );
    assert_eq!(env.snapshot(), before, "nothing was cancelled");
    assert_eq!(env.state(&pending), "pending");
    assert_usage_error(&env.run(&["cancel"]), "required");
});

backend_test!(retry_puts_a_completed_job_back, |env| {
    let id = env.enqueue("echo again >> runs");
    let worker = env.spawn_workers(&["--burst"]);
    env.wait_worker(worker, SETTLE);
    assert_eq!(env.state(&id), "completed");
    assert_eq!(env.ok(&["retry", &id]), format!("Retried: {id}\n"));
    let job = env.job(&id);
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    assert_eq!(job["history"].as_array().unwrap().len(), 1, "history stays");
    let worker = env.spawn_workers(&["--burst"]);
    env.wait_worker(worker, SETTLE);
    assert_eq!(env.state(&id), "completed");
    assert_eq!(env.read("runs"), "again\nagain\n");
    // Unfinished jobs are refused, bad states are bad input.
    let pending = env.enqueue("true");
    let before = env.snapshot();
    assert_error(&env.run(&["retry", &pending]), 1, "pending");
    assert_eq!(env.snapshot(), before);
    env.assert_refused(&["retry", "--state", "pending"], "finished state", &before);
    env.assert_refused(&["retry", "--state", "bogus"], "unknown state", &before);
    assert_eq!(
        env.json(&["retry", "--state", "completed"]),
        serde_json::json!([id])
    );
});

backend_test!(clean_removes_only_old_finished_jobs, |env| {
    let done = env.enqueue("true");
    let worker = env.spawn_workers(&["--burst"]);
    env.wait_worker(worker, SETTLE);
    let cancelled = env.enqueue("true");
    env.ok(&["cancel", &cancelled]);
    let pending = env.enqueue("true");
    let before = env.snapshot();
    env.assert_refused(&["clean", "--older-than", "soon"], "duration", &before);
    env.assert_refused(&["clean", "--state", "pending"], "finished state", &before);
    assert_eq!(
        env.ok(&["clean", "--older-than", "1h"]),
        "Deleted 0 jobs (and 0 stopped workers)\n"
    );
    let cleaned = env.json(&["clean", "--state", "completed", "--older-than", "0s"]);
    assert_eq!(cleaned["jobs"], 1);
    assert_error(&env.run(&["show", &done]), 1, &done);
    assert_eq!(env.state(&cancelled), "cancelled");
    let out = env.ok(&["clean"]);
    assert!(out.starts_with("Deleted 1 jobs"), "{out}");
    assert_eq!(env.state(&pending), "pending", "never an unfinished job");
});

// Retention's minimum is 60 s, so the old job is made old by importing it with
// a finish time in 2020.
backend_test!(
    retention_deletes_old_finished_jobs_in_the_background,
    |env| {
        let old = serde_json::json!({
            "id": "finished-long-ago", "command": "true", "cwd": "/", "state": "completed",
            "attempts": 1, "max_retries": 0, "interruptions": 0,
            "created_at": "2020-01-01T00:00:00.000Z", "updated_at": "2020-01-01T00:00:01.000Z",
            "next_run_at": "2020-01-01T00:00:00.000Z", "exit_code": 0, "last_error": null,
            "started_at": "2020-01-01T00:00:00.000Z", "finished_at": "2020-01-01T00:00:01.000Z",
            "attempts_history": [],
        });
        std::fs::write(env.file("old.jsonl"), format!("{old}\n")).unwrap();
        env.ok(&["import", "old.jsonl"]);
        let recent = env.enqueue("true");
        let pending = env.enqueue("sleep 60");
        env.ok(&["cancel", &pending]);
        let waiting = env.enqueue("true");
        env.ok(&["config", "set", "retention", "1h"]);
        env.ok(&["config", "set", "max-retries", "0"]);
        env.spawn_workers(&[]);
        wait_until("retention to delete the old job", SETTLE, || {
            env.run(&["show", "finished-long-ago"]).status.code() == Some(1)
        });
        env.wait_state(&recent, "completed", SETTLE);
        env.wait_state(&waiting, "completed", SETTLE);
        assert_eq!(
            env.state(&pending),
            "cancelled",
            "recent finished jobs stay"
        );
    }
);

backend_test!(show_reports_how_each_attempt_ran, |env| {
    env.ok(&["config", "set", "max-retries", "0"]);
    let failed = env.enqueue("echo out; exit 3");
    let killed = env.enqueue("kill -9 $$");
    let worker = env.spawn_workers(&["--burst"]);
    env.wait_worker(worker, SETTLE);
    let job = env.job(&failed);
    let attempt = &job["history"][0];
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["outcome"], "failed");
    assert_eq!(attempt["exit_code"], 3);
    assert_eq!(attempt["signal"], Value::Null);
    assert!(
        attempt["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{attempt}"
    );
    assert!(
        attempt["pid"].as_i64().is_some_and(|pid| pid > 1),
        "{attempt}"
    );
    assert!(
        attempt["max_rss_kb"].as_i64().is_some_and(|kb| kb > 0),
        "{attempt}"
    );
    assert!(
        attempt["cpu_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{attempt}"
    );
    assert_eq!(attempt["output_total"], 4);
    let text = env.ok(&["show", &failed]);
    for header in [
        "OUTCOME", "EXIT", "DURATION", "HOST", "PID", "MAX RSS", "CPU",
    ] {
        assert!(text.contains(header), "no {header} in:\n{text}");
    }
    assert!(text.contains("iB"), "max RSS in binary units:\n{text}");
    let job = env.job(&killed);
    assert_eq!(job["history"][0]["signal"], 9);
    assert!(env.ok(&["show", &killed]).contains("SIGKILL"));
    // `dlq list` says why each job died and what it printed last.
    let dead = env.json(&["dlq", "list"]);
    let failed_entry = dead
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == failed.as_str())
        .unwrap();
    assert_eq!(failed_entry["last_output_line"], "out");
    assert!(env.ok(&["dlq", "list"]).contains("LAST OUTPUT"));
});
