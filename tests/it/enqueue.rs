//! Adding jobs: the three single-job forms, `--json` output, ids (kept, generated,
//! duplicate), `enqueue --file`, and reading jobs back with `list` and `show`.

use serde_json::{Value, json};

use crate::common::{assert_error, assert_usage_error, parse_time};

/// Checks the seven contract fields of a job object and their types.
fn assert_job_object(job: &Value) {
    for field in ["id", "command", "state", "created_at", "updated_at"] {
        assert!(job[field].is_string(), "{field} is not a string in {job}");
    }
    for field in ["attempts", "max_retries"] {
        assert!(job[field].is_i64(), "{field} is not an integer in {job}");
    }
    parse_time(job["created_at"].as_str().unwrap());
    parse_time(job["updated_at"].as_str().unwrap());
}

backend_test!(json_form_keeps_the_given_id_and_max_retries, |env| {
    let out = env.ok(&[
        "enqueue",
        r#"{"id":"job1","command":"sleep 2","max_retries":5}"#,
    ]);
    assert_eq!(out, "Enqueued: job1\n");
    let job = env.job("job1");
    assert_job_object(&job);
    assert_eq!(job["id"], "job1");
    assert_eq!(job["command"], "sleep 2");
    assert_eq!(job["state"], "pending");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["max_retries"], 5);
});

backend_test!(command_flag_form, |env| {
    let out = env.ok(&[
        "enqueue",
        "--command",
        "echo hi",
        "--id",
        "j2",
        "--max-retries",
        "0",
    ]);
    assert_eq!(out, "Enqueued: j2\n");
    let job = env.job("j2");
    assert_eq!(job["command"], "echo hi");
    assert_eq!(job["max_retries"], 0);
});

backend_test!(words_after_double_dash_are_the_command, |env| {
    let out = env.ok(&["enqueue", "--", "echo", "hi"]);
    let id = out
        .trim()
        .strip_prefix("Enqueued: ")
        .expect("Enqueued: <id>");
    assert_eq!(env.job(id)["command"], "echo hi");
});

backend_test!(max_retries_defaults_to_the_config_setting, |env| {
    let id = env.enqueue("true");
    assert_eq!(env.job(&id)["max_retries"], 3, "the documented default");
    env.ok(&["config", "set", "max-retries", "7"]);
    let id = env.enqueue("true");
    assert_eq!(
        env.job(&id)["max_retries"],
        7,
        "copied from config at enqueue"
    );
    env.ok(&["config", "set", "max-retries", "1"]);
    assert_eq!(
        env.job(&id)["max_retries"],
        7,
        "later config changes do not touch existing jobs"
    );
});

backend_test!(enqueue_json_prints_only_the_job_object, |env| {
    let out = env.run(&["enqueue", "--json", "--command", "echo hi"]);
    assert!(out.status.success());
    let job: Value = serde_json::from_slice(&out.stdout).expect("stdout is pure JSON");
    assert_job_object(&job);
    assert_eq!(job["state"], "pending");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["max_retries"], 3);
    assert_eq!(env.job(job["id"].as_str().unwrap())["command"], "echo hi");
});

backend_test!(generated_ids_are_unique_listed_in_order, |env| {
    let ids: Vec<String> = (0..20).map(|i| env.enqueue(&format!("echo {i}"))).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "ids must be unique: {ids:?}");
    // Generated ids are random (DECISIONS.md §15); the store keeps creation order.
    let listed: Vec<String> = env
        .jobs()
        .iter()
        .map(|job| job["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, ids, "list shows jobs in creation order");
});

backend_test!(
    duplicate_id_is_refused_and_the_existing_job_untouched,
    |env| {
        env.ok(&[
            "enqueue",
            r#"{"id":"dup","command":"echo first","max_retries":1}"#,
        ]);
        let before = env.snapshot();
        let out = env.run(&[
            "enqueue",
            r#"{"id":"dup","command":"echo second","max_retries":4}"#,
        ]);
        assert_usage_error(&out, "dup");
        let out = env.run(&["enqueue", "--id", "dup", "--command", "echo third"]);
        assert_usage_error(&out, "dup");
        assert_eq!(env.snapshot(), before);
        let job = env.job("dup");
        assert_eq!(job["command"], "echo first");
        assert_eq!(job["max_retries"], 1);
    }
);

backend_test!(file_enqueues_one_job_per_line_and_prints_ids, |env| {
    let path = env.file("jobs.jsonl");
    std::fs::write(
        &path,
        "{\"command\":\"echo a\"}\n\n{\"id\":\"f2\",\"command\":\"echo b\",\"max_retries\":0}\n{\"command\":\"echo c\"}\n",
    )
    .unwrap();
    let out = env.ok(&["enqueue", "--file", path.to_str().unwrap()]);
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 3, "one id per line: {out}");
    assert_eq!(ids[1], "f2");
    let commands: Vec<Value> = ids
        .iter()
        .map(|id| env.job(id)["command"].clone())
        .collect();
    assert_eq!(
        commands,
        vec![json!("echo a"), json!("echo b"), json!("echo c")]
    );
    assert_eq!(env.job("f2")["max_retries"], 0);
});

backend_test!(file_from_stdin, |env| {
    use std::io::Write;
    let mut child = env
        .cmd(&["enqueue", "--file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"id\":\"s1\",\"command\":\"echo a\"}\n{\"id\":\"s2\",\"command\":\"echo b\"}\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s1\ns2\n");
});

backend_test!(file_is_all_or_nothing_and_names_the_bad_line, |env| {
    env.ok(&["enqueue", r#"{"id":"old","command":"echo old"}"#]);
    let before = env.snapshot();
    let cases: &[(&str, &str)] = &[
        // (file contents, what the error must mention besides the line number)
        (
            "{\"command\":\"echo 1\"}\n{\"command\":\"echo 2\"}\n{\"command\":\n",
            "line 3",
        ),
        ("{\"command\":\"echo 1\"}\n{\"command\":\"\"}\n", "line 2"),
        (
            "{\"command\":\"echo 1\"}\n{\"command\":\"x\",\"bogus\":true}\n",
            "line 2",
        ),
        ("{\"command\":\"echo 1\",\"max_retries\":-1}\n", "line 1"),
        (
            "{\"id\":\"a\",\"command\":\"x\"}\n{\"id\":\"a\",\"command\":\"y\"}\n",
            "line 2",
        ),
        (
            "{\"command\":\"echo 1\"}\n{\"command\":\"a\u{0}b\"}\n",
            "line 2",
        ),
    ];
    for (i, (contents, needle)) in cases.iter().enumerate() {
        let path = env.file(&format!("bad{i}.jsonl"));
        std::fs::write(&path, contents).unwrap();
        let out = env.run(&["enqueue", "--file", path.to_str().unwrap()]);
        assert_usage_error(&out, needle);
        assert_eq!(env.snapshot(), before, "case {i} changed the store");
    }
    // A line whose id already exists in the store: nothing from the file goes in.
    let path = env.file("dup.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"new1\",\"command\":\"x\"}\n{\"id\":\"old\",\"command\":\"y\"}\n",
    )
    .unwrap();
    let out = env.run(&["enqueue", "--file", path.to_str().unwrap()]);
    assert_usage_error(&out, "old");
    assert_eq!(env.snapshot(), before);
    // A file that cannot be read.
    let out = env.run(&[
        "enqueue",
        "--file",
        env.file("missing.jsonl").to_str().unwrap(),
    ]);
    assert_usage_error(&out, "missing.jsonl");
    assert_eq!(env.snapshot(), before);
});

backend_test!(list_filters_by_state_and_limits, |env| {
    let a = env.enqueue("true");
    let b = env.enqueue("true");
    let c = env.enqueue("true");
    let all = env.json(&["list"]);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![a.as_str(), b.as_str(), c.as_str()],
        "oldest first"
    );
    for job in all.as_array().unwrap() {
        assert_job_object(job);
    }
    assert_eq!(
        env.json(&["list", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.json(&["list", "--state", "pending"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for state in ["processing", "completed", "failed", "dead"] {
        assert_eq!(env.json(&["list", "--state", state]), json!([]), "{state}");
    }
    let table = env.ok(&["list"]);
    assert!(
        table.lines().next().unwrap().contains("ID"),
        "a table with a header: {table}"
    );
    assert!(table.contains(&a));
});

backend_test!(show_of_an_unknown_id_exits_1, |env| {
    env.enqueue("true");
    let before = env.snapshot();
    assert_error(&env.run(&["show", "no-such-job"]), 1, "no-such-job");
    assert_error(
        &env.run(&["show", "no-such-job", "--json"]),
        1,
        "no-such-job",
    );
    assert_eq!(env.snapshot(), before);
});

backend_test!(json_output_is_pure_json_on_stdout, |env| {
    env.ok(&["enqueue", r#"{"id":"p1","command":"echo hi"}"#]);
    let commands: &[&[&str]] = &[
        &["list", "--json"],
        &["list", "--state", "pending", "--json"],
        &["show", "p1", "--json"],
        &["status", "--json"],
        &["dlq", "list", "--json"],
        &["worker", "list", "--json"],
        &["worker", "list", "--all", "--json"],
        &["config", "list", "--json"],
        &["config", "get", "max-retries", "--json"],
        &["--json", "status"],
    ];
    for args in commands {
        let out = env.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{args:?} printed non-JSON ({e}): {text}"));
        let lists =
            args[0] == "list" || args[..2] == ["dlq", "list"] || args[..2] == ["worker", "list"];
        if lists {
            assert!(value.is_array(), "{args:?} must print an array: {value}");
        } else {
            assert!(value.is_object(), "{args:?} must print an object: {value}");
        }
    }
});
