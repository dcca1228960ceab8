//! Dependencies (issue 11): `--after ID` waits for completed jobs, a dead or cancelled
//! job cancels what waits for it (down the chain), unknown ids are refused, and `show`
//! lists what a job waits for.

use std::time::Duration;

use serde_json::json;

const SETTLE: Duration = Duration::from_secs(30);

backend_test!(a_chain_runs_in_order, |env| {
    // A is slow, so with three workers B and C would overtake it if they could.
    let a = env.enqueue("sleep 0.5; echo A >> order");
    let b = env.enqueue_args(&["--after", &a, "--command", "echo B >> order"]);
    let c = env.enqueue_json(&json!({"command": "echo C >> order", "after": [b]}));
    let both = env.enqueue_args(&["--after", &a, "--after", &b, "--command", "echo D > both"]);
    assert_eq!(env.job(&b)["after"], json!([a]));
    assert_eq!(env.job(&c)["after"], json!([b]));
    // Listed by id, whatever order they were given in.
    let mut ab = [a.clone(), b.clone()];
    ab.sort();
    assert_eq!(env.job(&both)["after"], json!(ab));
    assert_eq!(env.job(&a)["after"], json!([]));
    let listed = env.jobs();
    assert_eq!(listed[1]["after"], json!([a]), "list --json too");
    let text = env.ok(&["show", &b]);
    assert!(text.contains(&a), "show {b} does not name {a}:\n{text}");
    // It has no run time of its own yet: show says what it waits for instead.
    let next = text
        .lines()
        .find(|l| l.starts_with("next run"))
        .unwrap_or_default();
    assert!(
        next.contains("runs after have completed (1 left)"),
        "{text}"
    );
    assert_eq!(env.state(&b), "pending");

    env.spawn_workers(&["--count", "3"]);
    env.wait_state(&c, "completed", SETTLE);
    env.wait_state(&both, "completed", SETTLE);
    assert_eq!(env.read("order"), "A\nB\nC\n");
    assert_eq!(env.read("both"), "D\n");
    // Waiting for jobs that are already completed: ready at once.
    let late = env.enqueue_args(&["--after", &a, "--after", &c, "--command", "true"]);
    env.wait_state(&late, "completed", SETTLE);
});

backend_test!(a_dead_job_cancels_the_chain_after_it, |env| {
    let a = env.enqueue_args(&["--max-retries", "0", "--command", "exit 1"]);
    let b = env.enqueue_args(&["--after", &a, "--command", "echo B >> ran"]);
    let c = env.enqueue_args(&["--after", &b, "--command", "echo C >> ran"]);
    // A job that does not depend on A is not touched.
    let free = env.enqueue("echo free >> free");
    env.spawn_workers(&["--count", "2"]);
    env.wait_state(&a, "dead", SETTLE);
    let job_b = env.wait_state(&b, "cancelled", SETTLE);
    let job_c = env.wait_state(&c, "cancelled", SETTLE);
    let error_b = job_b["last_error"].as_str().unwrap_or_default();
    assert!(
        error_b.contains(&a),
        "B's last_error does not name A ({a}): {job_b}"
    );
    let error_c = job_c["last_error"].as_str().unwrap_or_default();
    assert!(
        error_c.contains(&b) || error_c.contains(&a),
        "C's last_error names neither B nor A: {job_c}"
    );
    env.wait_state(&free, "completed", SETTLE);
    assert_eq!(env.read("ran"), "", "B and C never ran");
    for id in [&b, &c] {
        assert_eq!(env.job(id)["attempts"], 0, "{id} used no attempt");
    }
});

backend_test!(a_cancelled_job_cancels_what_waits_for_it, |env| {
    let a = env.enqueue("echo A >> ran");
    let b = env.enqueue_args(&["--after", &a, "--command", "echo B >> ran"]);
    let c = env.enqueue_args(&["--after", &b, "--command", "echo C >> ran"]);
    env.ok(&["cancel", &a]);
    env.spawn_workers(&[]);
    let job_b = env.wait_state(&b, "cancelled", SETTLE);
    env.wait_state(&c, "cancelled", SETTLE);
    assert!(
        job_b["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&a),
        "B's last_error does not name A ({a}): {job_b}"
    );
    let after = env.enqueue("true");
    env.wait_state(&after, "completed", SETTLE);
    assert_eq!(env.read("ran"), "");
});

backend_test!(unknown_after_ids_are_refused, |env| {
    let known = env.enqueue("true");
    let before = env.snapshot();
    env.assert_refused(
        &["enqueue", "--after", "nope", "--command", "true"],
        "nope",
        &before,
    );
    env.assert_refused(
        &[
            "enqueue",
            "--after",
            &known,
            "--after",
            "nope2",
            "--command",
            "true",
        ],
        "nope2",
        &before,
    );
    let job = json!({"command": "true", "after": [known, "nope3"]}).to_string();
    env.assert_refused(&["enqueue", &job], "nope3", &before);
    let path = env.file("jobs.jsonl");
    std::fs::write(
        &path,
        format!(
            "{}\n{}\n",
            json!({"command": "true", "after": [known]}),
            json!({"command": "true", "after": ["nope4"]})
        ),
    )
    .unwrap();
    env.assert_refused(
        &["enqueue", "--file", path.to_str().unwrap()],
        "nope4",
        &before,
    );
    // The known id alone is fine.
    let waiting = env.enqueue_args(&["--after", &known, "--command", "true"]);
    assert_eq!(env.job(&waiting)["after"], json!([known]));
});
