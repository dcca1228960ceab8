//! Priorities (issue 11): higher first, strict FIFO within a priority, the
//! −1000..1000 range, and the schedule fields every job carries in its JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Rng, enqueued_id};

/// 500 shell jobs one at a time on a loaded 2-core machine; ends as soon as they do.
const ALL_RUN: Duration = Duration::from_secs(240);

backend_test!(five_hundred_jobs_start_in_priority_then_fifo_order, |env| {
    let mut rng = Rng::new(0x5eed_0011);
    let priorities: Vec<i64> = (0..500)
        .map(|n| match n {
            0 => -1000,
            1 => 1000,
            // Half over the whole range, half over nine values: many equal
            // priorities, so FIFO within a priority is exercised too.
            _ if n % 2 == 0 => rng.range(-1000, 1000),
            _ => rng.range(-4, 4) * 250,
        })
        .collect();
    let lines: String = priorities
        .iter()
        .enumerate()
        .map(|(n, p)| {
            format!(
                "{}\n",
                json!({"command": format!("echo {n} >> order"), "priority": p})
            )
        })
        .collect();
    let path = env.file("jobs.jsonl");
    std::fs::write(&path, lines).unwrap();
    let out = env.ok(&["enqueue", "--file", path.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 500, "one id per job: {out}");
    // `list --json` (oldest first) shows each job's priority.
    let shown: Vec<i64> = env
        .jobs()
        .iter()
        .map(|j| j["priority"].as_i64().expect("an integer priority"))
        .collect();
    assert_eq!(shown, priorities);

    let mut expected: Vec<usize> = (0..500).collect();
    expected.sort_by_key(|&n| (std::cmp::Reverse(priorities[n]), n));
    let worker = env.spawn_workers(&["--count", "1", "--burst"]);
    assert_eq!(env.wait_worker(worker, ALL_RUN), Some(0));
    let order: Vec<usize> = env
        .read("order")
        .lines()
        .map(|l| l.parse().expect("a job number"))
        .collect();
    assert_eq!(order.len(), 500, "every job ran once");
    if let Some(at) = (0..500).find(|&i| order[i] != expected[i]) {
        let describe = |n: usize| format!("job {n} (priority {})", priorities[n]);
        panic!(
            "start {at} was {} but should have been {}; the whole order: {order:?}",
            describe(order[at]),
            describe(expected[at])
        );
    }
});

backend_test!(priority_is_shown_and_kept_within_range, |env| {
    let high = env.enqueue_args(&["--priority", "1000", "--command", "true"]);
    let low = env.enqueue_args(&["--priority=-1000", "--command", "true"]);
    let from_json = env.enqueue_json(&json!({"command": "true", "priority": -7}));
    let plain = env.enqueue("true");
    for (id, priority) in [(&high, 1000), (&low, -1000), (&from_json, -7), (&plain, 0)] {
        assert_eq!(env.job(id)["priority"], priority, "show --json of {id}");
    }
    let listed: Vec<Value> = env.jobs().iter().map(|j| j["priority"].clone()).collect();
    assert_eq!(listed, [json!(1000), json!(-1000), json!(-7), json!(0)]);
    let out = env.ok(&["enqueue", "--json", "--priority", "3", "--command", "true"]);
    let job: Value = serde_json::from_str(&out).expect("enqueue --json is JSON");
    assert_eq!(job["priority"], 3);

    let before = env.snapshot();
    for (args, needle) in [
        (
            &["enqueue", "--priority", "1001", "--command", "true"][..],
            "priority",
        ),
        (
            &["enqueue", "--priority=-1001", "--command", "true"],
            "priority",
        ),
        (
            &["enqueue", "--priority", "high", "--command", "true"],
            "high",
        ),
        (
            &["enqueue", r#"{"command":"true","priority":5000}"#],
            "priority",
        ),
        (
            &["enqueue", r#"{"command":"true","priority":-1001}"#],
            "priority",
        ),
        // Wrong types: refused, whatever words the JSON error uses.
        (&["enqueue", r#"{"command":"true","priority":1.5}"#], ""),
        (&["enqueue", r#"{"command":"true","priority":"3"}"#], ""),
    ] {
        env.assert_refused(args, needle, &before);
    }
    // A bad line in a file: nothing from the file goes in.
    let path = env.file("bad.jsonl");
    std::fs::write(
        &path,
        "{\"command\":\"true\",\"priority\":1}\n{\"command\":\"true\",\"priority\":1001}\n",
    )
    .unwrap();
    env.assert_refused(
        &["enqueue", "--file", path.to_str().unwrap()],
        "line 2",
        &before,
    );
});

backend_test!(every_job_shows_its_schedule_fields, |env| {
    let out = env.ok(&["enqueue", "--json", "--command", "true"]);
    let printed: Value = serde_json::from_str(&out).expect("enqueue --json is JSON");
    let id = printed["id"].as_str().expect("an id").to_owned();
    let shown = env.job(&id);
    let listed = env.jobs().remove(0);
    for job in [&printed, &shown, &listed] {
        assert_eq!(job["priority"], 0, "{job}");
        assert_eq!(job["queue"], "default", "{job}");
        assert_eq!(job["run_at"], Value::Null, "{job}");
        assert_eq!(job["unique_key"], Value::Null, "{job}");
        assert_eq!(job["env"], Value::Null, "{job}");
        assert_eq!(job["after"], json!([]), "{job}");
        assert!(job["cwd"].is_string(), "{job}");
    }
    // Two jobs of one priority enqueued back to back: the first one runs first,
    // and a higher priority enqueued later overtakes both.
    let first = enqueued_id(&env.ok(&["enqueue", "--command", "echo first >> order"]));
    let second = env.enqueue("echo second >> order");
    let urgent = env.enqueue_args(&["--priority", "1", "--command", "echo urgent >> order"]);
    let worker = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(worker, Duration::from_secs(60)), Some(0));
    assert_eq!(env.read("order"), "urgent\nfirst\nsecond\n");
    for id in [&first, &second, &urgent] {
        assert_eq!(env.state(id), "completed");
    }
});
