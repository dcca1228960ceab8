//! Per-job environment and directory (issue 11): `--env KEY=VALUE` / `"env"` reach
//! the command, `--cwd DIR` / `"cwd"` is where it runs, and a directory missing on the
//! worker's machine fails the attempt with a clear `last_error`.

use std::time::Duration;

use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(30);

backend_test!(env_reaches_the_job, |env| {
    let flags = env.enqueue_args(&[
        "--env",
        "GREETING=hello world",
        "--env",
        "EQ=a=b",
        "--env",
        "EMPTY=",
        "--command",
        "printf '%s|%s|%s' \"$GREETING\" \"$EQ\" \"${EMPTY-unset}\" > flags.out",
    ]);
    assert_eq!(
        env.job(&flags)["env"],
        json!({"GREETING": "hello world", "EQ": "a=b", "EMPTY": ""})
    );
    let from_json = env.enqueue_json(&json!({
        "command": "printf '%s' \"$FROM_JSON\" > json.out",
        "env": {"FROM_JSON": "yes"},
    }));
    assert_eq!(env.job(&from_json)["env"], json!({"FROM_JSON": "yes"}));
    let listed: Vec<Value> = env.jobs().iter().map(|j| j["env"].clone()).collect();
    assert_eq!(listed[1], json!({"FROM_JSON": "yes"}), "list --json too");
    // The job's own variables win over the worker's.
    let own = env.enqueue_args(&[
        "--env",
        "SHARED=job",
        "--command",
        "printf '%s' \"$SHARED\" > own.out",
    ]);
    env.spawn_workers_with(&[], &[("SHARED", "worker")]);
    for id in [&flags, &from_json, &own] {
        env.wait_state(id, "completed", SETTLE);
    }
    assert_eq!(env.read("flags.out"), "hello world|a=b|");
    assert_eq!(env.read("json.out"), "yes");
    assert_eq!(env.read("own.out"), "job");
});

backend_test!(bad_env_is_refused, |env| {
    env.enqueue("true");
    let before = env.snapshot();
    for (value, needle) in [("NOEQUALS", "NOEQUALS"), ("=value", "=value")] {
        env.assert_refused(
            &["enqueue", "--env", value, "--command", "true"],
            needle,
            &before,
        );
    }
    let job = json!({"command": "true", "env": {"A": 1}}).to_string();
    env.assert_refused(&["enqueue", &job], "", &before);
    let job = json!({"command": "true", "env": ["A=b"]}).to_string();
    env.assert_refused(&["enqueue", &job], "", &before);
});

backend_test!(cwd_is_where_the_job_runs, |env| {
    let dir = env.file("work dir");
    std::fs::create_dir(&dir).unwrap();
    let dir_text = dir.to_str().unwrap().to_owned();
    let flag = env.enqueue_args(&["--cwd", &dir_text, "--command", "pwd > flag.out"]);
    assert_eq!(env.job(&flag)["cwd"], dir_text.as_str());
    let from_json = env.enqueue_json(&json!({"command": "pwd > json.out", "cwd": dir_text}));
    assert_eq!(env.job(&from_json)["cwd"], dir_text.as_str());
    // Without --cwd: the directory enqueue ran in.
    let other = env.file("other");
    std::fs::create_dir(&other).unwrap();
    let out = env
        .cmd_in(&other, &["enqueue", "--command", "pwd > default.out"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let default = crate::common::enqueued_id(&String::from_utf8_lossy(&out.stdout));
    env.spawn_workers(&[]);
    for id in [&flag, &from_json, &default] {
        env.wait_state(id, "completed", SETTLE);
    }
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
    for (file, expected) in [
        (dir.join("flag.out"), &dir),
        (dir.join("json.out"), &dir),
        (other.join("default.out"), &other),
    ] {
        let printed = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            canonical(std::path::Path::new(printed.trim())),
            canonical(expected),
            "{}",
            file.display()
        );
    }
});

backend_test!(a_missing_cwd_fails_the_attempt_clearly, |env| {
    // Present when the job is enqueued, gone by the time a worker runs it.
    let dir = env.file("vanishing");
    std::fs::create_dir(&dir).unwrap();
    let dir_text = dir.to_str().unwrap().to_owned();
    let id = env.enqueue_args(&[
        "--max-retries",
        "0",
        "--cwd",
        &dir_text,
        "--command",
        "echo ran > ran.out",
    ]);
    std::fs::remove_dir(&dir).unwrap();
    let later = env.enqueue("true");
    env.spawn_workers(&[]);
    let job = env.wait_state(&id, "dead", SETTLE);
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&dir_text),
        "last_error does not name the directory: {job}"
    );
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(!env.file("ran.out").exists(), "the command never ran");
    assert!(!dir.exists(), "the worker does not create the directory");
    env.wait_state(&later, "completed", SETTLE);
});
