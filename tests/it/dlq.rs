//! The dead letter queue: `dlq list`, `dlq retry ID...` and `dlq retry --all`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, assert_error};

/// Enqueues `n` jobs that always fail with no retries, runs them dead, and returns
/// their ids.
fn dead_jobs(env: &mut Env, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| {
            env.enqueue_json(
                &json!({"id": format!("dead{i}"), "command": "exit 4", "max_retries": 0}),
            )
        })
        .collect();
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    for id in &ids {
        assert_eq!(env.state(id), "dead");
    }
    ids
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

backend_test!(dlq_list_shows_only_dead_jobs_with_their_error, |env| {
    let dead = dead_jobs(&mut env, 2);
    env.enqueue("true");
    let list = env.json(&["dlq", "list"]);
    assert_eq!(ids(&list), dead);
    for job in list.as_array().unwrap() {
        assert_eq!(job["state"], "dead");
        assert!(
            job["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{job}"
        );
    }
});

backend_test!(retry_resets_attempts_and_keeps_history, |env| {
    let dead = dead_jobs(&mut env, 1);
    let id = &dead[0];
    assert_eq!(env.job(id)["history"].as_array().unwrap().len(), 1);
    let out = env.ok(&["dlq", "retry", id]);
    assert!(out.contains(id.as_str()), "{out}");
    let job = env.job(id);
    assert_eq!(job["state"], "pending");
    assert_eq!(job["attempts"], 0, "dlq retry resets attempts");
    assert_eq!(
        job["history"].as_array().unwrap().len(),
        1,
        "history is kept"
    );
    // It runs again (and dies again, since it still fails).
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(id);
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 1);
    assert_eq!(
        job["history"].as_array().unwrap().len(),
        2,
        "both runs are in the history"
    );
});

backend_test!(
    retry_of_a_job_that_is_not_dead_exits_1_and_changes_nothing,
    |env| {
        let dead = dead_jobs(&mut env, 1);
        let pending = env.enqueue("true");
        let before = env.snapshot();
        assert_error(&env.run(&["dlq", "retry", &pending]), 1, &pending);
        assert_eq!(env.snapshot(), before);
        assert_error(&env.run(&["dlq", "retry", "no-such-job"]), 1, "no-such-job");
        assert_eq!(env.snapshot(), before);
        // A mix of a dead and a non-dead id: nothing changes, not even the dead one.
        let out = env.run(&["dlq", "retry", &dead[0], &pending]);
        assert_error(&out, 1, &pending);
        assert_eq!(
            env.snapshot(),
            before,
            "dlq retry with one bad id must change nothing"
        );
        assert_eq!(env.state(&dead[0]), "dead");
    }
);

backend_test!(retry_all_puts_every_dead_job_back, |env| {
    let dead = dead_jobs(&mut env, 3);
    let done = env.enqueue("true");
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let out = env.json(&["dlq", "retry", "--all"]);
    let mut retried: Vec<String> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    retried.sort();
    assert_eq!(retried, dead);
    for id in &dead {
        let job = env.job(id);
        assert_eq!(job["state"], "pending");
        assert_eq!(job["attempts"], 0);
    }
    assert_eq!(
        env.state(&done),
        "completed",
        "completed jobs are not touched"
    );
    assert_eq!(env.json(&["dlq", "list"]), json!([]));
    // Nothing left to retry is not an error.
    assert_eq!(env.json(&["dlq", "retry", "--all"]), json!([]));
});
