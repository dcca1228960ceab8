//! Output for programs (issue #12): `worker start --json` and `worker stop --json`
//! print one JSON event per line, a reader that stops reading never stalls the
//! worker, `bench --json` keys are snake_case with their unit, and JSON documents
//! are indented on a terminal and one line each when piped.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{bin, wait_until};

/// The events `worker start --json` printed on stdout.
fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
            assert!(event["event"].is_string(), "{line}");
            crate::common::parse_time(event["time"].as_str().expect("a time"));
            event
        })
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect()
}

backend_test!(worker_start_json_prints_one_event_per_line, |env| {
    env.ensure_store();
    let good = env.enqueue("echo hi");
    let bad = env.enqueue_json(&serde_json::json!({"command": "exit 3", "max_retries": 0}));
    let out = env.run(&["worker", "start", "--burst", "--json"]);
    assert!(out.status.success());
    let events = events(&out.stdout);
    let names = names(&events);
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"stopped"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "job_started").count(), 2);
    assert_eq!(names.iter().filter(|n| **n == "job_ended").count(), 2);
    let started = &events[0];
    assert!(started["pid"].as_u64().is_some_and(|p| p > 0));
    assert_eq!(started["workers"].as_array().map(Vec::len), Some(1));
    let ended = |id: &str| {
        events
            .iter()
            .find(|e| e["event"] == "job_ended" && e["job"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no job_ended for {id}"))
    };
    let g = ended(&good);
    assert_eq!(g["outcome"], "succeeded");
    assert_eq!(g["exit_code"], 0);
    assert_eq!(g["state"], "completed");
    assert!(g["duration_ms"].is_u64(), "{g}");
    let b = ended(&bad);
    assert_eq!(b["outcome"], "failed");
    assert_eq!(b["exit_code"], 3);
    assert_eq!(b["state"], "dead");
    let stopping = events
        .iter()
        .find(|e| e["event"] == "stopping")
        .expect("stopping");
    assert_eq!(stopping["reason"], "burst");
    let stopped = events.last().expect("stopped");
    assert_eq!(
        (stopped["succeeded"].as_u64(), stopped["failed"].as_u64()),
        (Some(1), Some(1))
    );
    // Human lines stay on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker(s) started"));
});

backend_test!(a_sighup_shows_in_the_json_events, |env| {
    env.ensure_store();
    // stdout into a file: the events of a worker running in the background.
    let pid = env.spawn_workers_wrapped(
        &["sh", "-c", "exec \"$@\" > events.jsonl", "sh"],
        &["--json"],
        &[],
    );
    env.wait_live_workers(1, Duration::from_secs(20));
    let id = env.enqueue("sleep 1");
    env.wait_state(&id, "processing", Duration::from_secs(10));
    env.signal(pid, libc::SIGHUP);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let events = events(env.read("events.jsonl").as_bytes());
    let stopping = events
        .iter()
        .find(|e| e["event"] == "stopping")
        .expect("stopping");
    assert_eq!(stopping["reason"], "signal");
    assert_eq!(stopping["signal"], "SIGHUP");
    assert_eq!(stopping["force"], false);
    let ended = events
        .iter()
        .find(|e| e["event"] == "job_ended")
        .expect("job_ended");
    assert_eq!(ended["state"], "completed");
    assert_eq!(names(&events).last(), Some(&"stopped"));
});

backend_test!(worker_stop_json_prints_its_events, |env| {
    let pid = env.spawn_workers(&["--count", "2"]);
    env.wait_live_workers(2, Duration::from_secs(20));
    let out = env.run(&["worker", "stop", "--json"]);
    assert!(out.status.success());
    let events = events(&out.stdout);
    let names = names(&events);
    assert_eq!(
        names,
        [
            "stop_requested",
            "worker_stopped",
            "worker_stopped",
            "stopped"
        ],
        "{events:?}"
    );
    assert_eq!(events[0]["force"], false);
    assert_eq!(events[0]["workers"].as_array().map(Vec::len), Some(2));
    assert_eq!(events[3]["workers"], 2);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
    // Nothing to stop: still a well-formed stream.
    let out = env.run(&["worker", "stop", "--json"]);
    let names_again: Vec<String> = super::events(&out.stdout)
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names_again, ["stop_requested", "stopped"]);
});

backend_test!(bench_json_keys_are_snake_case_with_units, |env| {
    let report = env.json(&["bench", "--mode", "noop", "--jobs", "50", "--workers", "2"]);
    fn check(value: &Value, path: &str) {
        if let Value::Object(map) = value {
            for (key, inner) in map {
                assert!(
                    !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "not snake_case: {path}.{key}"
                );
                check(inner, &format!("{path}.{key}"));
            }
        }
    }
    check(&report, "");
    let results = report["results"].as_object().expect("results");
    for key in results.keys() {
        let unit = ["_ms", "_seconds", "_per_second", "_ratio"]
            .iter()
            .any(|u| key.ends_with(u))
            || key.split('_').any(|w| w == "jobs");
        assert!(unit, "the unit is in the name: {key}");
    }
    assert_eq!(results["jobs_completed"], 50.0);
    assert!(
        results["throughput_jobs_per_second"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
    assert!(results["claim_latency_p50_ms"].is_number(), "{report}");
    assert!(results["wall_time_seconds"].is_number(), "{report}");
});

backend_test!(
    json_is_pretty_on_a_terminal_and_one_line_when_piped,
    |env| {
        let id = env.enqueue("echo hi");
        let piped = env.ok(&["show", &id, "--json"]);
        assert_eq!(piped.lines().count(), 1, "one line when piped: {piped}");
        let value: Value = serde_json::from_str(&piped).expect("JSON");
        assert_eq!(value["id"], id.as_str());
        // On a terminal (script(1) gives the command a pseudo-terminal): indented.
        let mut cmd = Command::new("script");
        cmd.args(["-qec"])
            .arg(format!("{} show {id} --json", bin().to_string_lossy()))
            .arg("/dev/null")
            .current_dir(env.path())
            .env("QUEUECTL_DB", &env.db)
            .env("QUEUECTL_HOME", env.path().join("home"));
        let Ok(out) = cmd.output() else {
            eprintln!("script(1) is not installed; the terminal half was not run");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        assert!(out.status.success(), "{text}");
        assert!(text.lines().count() > 10, "indented on a terminal: {text}");
        assert!(text.contains(&format!("  \"id\": \"{id}\"")), "{text}");
        let again: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(again, value);
    }
);

backend_test!(
    a_reader_that_stops_reading_the_events_does_not_stall_the_worker,
    |env| {
        // 300 jobs make ~150 KB of events, past a pipe's 64 KiB: a supervisor that
        // wrote them itself would block on the full pipe, heartbeats and claims too.
        env.ensure_store();
        let lines: String = (0..300).map(|_| "{\"command\":\"true\"}\n").collect();
        std::fs::write(env.file("jobs.jsonl"), lines).expect("write jobs");
        env.ok(&["enqueue", "--file", "jobs.jsonl"]);
        let mut child = env
            .cmd(&["worker", "start", "--burst", "--json", "--count", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a worker");
        struct Kill<'a>(&'a mut std::process::Child);
        impl Drop for Kill<'_> {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let guard = Kill(&mut child);
        wait_until(
            "300 jobs completed, nobody reading",
            Duration::from_secs(120),
            || env.status()["completed"] == 300,
        );
        // Now read: every event is there, in order, and the worker exits 0.
        let mut stdout = String::new();
        std::io::Read::read_to_string(guard.0.stdout.as_mut().expect("stdout"), &mut stdout)
            .expect("read the events");
        let status = guard.0.wait().expect("wait");
        assert!(status.success());
        let events = events(stdout.as_bytes());
        assert_eq!(
            names(&events).iter().filter(|n| **n == "job_ended").count(),
            300
        );
        assert_eq!(names(&events).last(), Some(&"stopped"));
    }
);
