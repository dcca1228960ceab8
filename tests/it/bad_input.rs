//! Bad input: every case exits 2 with a one-line error naming what is wrong, and the
//! store (jobs, settings, workers) is exactly as it was before.

use crate::common::{Env, assert_usage_error};

/// A store with something in it, so "unchanged" means something.
fn populated(env: &Env) {
    env.ok(&[
        "enqueue",
        r#"{"id":"existing","command":"echo hi","max_retries":2}"#,
    ]);
    env.ok(&["config", "set", "backoff-base", "3"]);
}

/// Runs each `(args, needle)` case and checks it is refused without changing the store.
fn refuse_all(env: &Env, cases: &[(&[&str], &str)]) {
    populated(env);
    let before = env.snapshot();
    for (args, needle) in cases {
        env.assert_refused(args, needle, &before);
    }
}

backend_test!(malformed_json, |env| {
    refuse_all(
        &env,
        &[
            (&["enqueue", r#"{"command":"#], "json"),
            (&["enqueue", r#"{"command":"echo hi""#], "json"),
            (&["enqueue", r#"{command: "echo hi"}"#], "json"),
            (&["enqueue", r#"{"command":"echo hi"} trailing"#], "json"),
            (&["enqueue", r#"{"command":"echo hi",}"#], "json"),
            (&["enqueue", "[]"], "json"),
            (&["enqueue", "null"], "json"),
            (&["enqueue", r#""echo hi""#], "json"),
            (&["enqueue", "echo hi"], "json"),
        ],
    );
});

backend_test!(missing_or_empty_command, |env| {
    refuse_all(
        &env,
        &[
            (&["enqueue", "{}"], "command"),
            (&["enqueue", r#"{"id":"x"}"#], "command"),
            (&["enqueue", r#"{"command":""}"#], "command"),
            (&["enqueue", r#"{"command":"   "}"#], "command"),
            (&["enqueue", r#"{"command":null}"#], "command"),
            (&["enqueue", "--command", ""], "command"),
            (&["enqueue", "--command", " \t "], "command"),
            (&["enqueue"], "enqueue"),
        ],
    );
});

backend_test!(unknown_json_fields, |env| {
    refuse_all(
        &env,
        &[
            (
                &["enqueue", r#"{"command":"echo hi","urgency":1}"#],
                "urgency",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","maxRetries":1}"#],
                "maxRetries",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","state":"completed"}"#],
                "state",
            ),
        ],
    );
});

backend_test!(wrong_types, |env| {
    refuse_all(
        &env,
        &[
            (&["enqueue", r#"{"command":5}"#], "command"),
            (&["enqueue", r#"{"command":["echo","hi"]}"#], "command"),
            (&["enqueue", r#"{"command":"echo hi","id":5}"#], "json"),
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":"3"}"#],
                "json",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":1.5}"#],
                "json",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":true}"#],
                "json",
            ),
            (
                &["enqueue", "--command", "echo hi", "--max-retries", "three"],
                "max-retries",
            ),
            (
                &["enqueue", "--command", "echo hi", "--max-retries", "1.5"],
                "max-retries",
            ),
        ],
    );
});

backend_test!(negative_or_huge_max_retries, |env| {
    refuse_all(
        &env,
        &[
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":-1}"#],
                "max_retries",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":1001}"#],
                "max_retries",
            ),
            (
                &[
                    "enqueue",
                    r#"{"command":"echo hi","max_retries":99999999999}"#,
                ],
                "max_retries",
            ),
            (
                &[
                    "enqueue",
                    r#"{"command":"echo hi","max_retries":18446744073709551616}"#,
                ],
                "json",
            ),
            (
                &["enqueue", r#"{"command":"echo hi","max_retries":1e400}"#],
                "json",
            ),
            (
                &["enqueue", "--command", "echo hi", "--max-retries", "-1"],
                "max_retries",
            ),
            (
                &[
                    "enqueue",
                    "--command",
                    "echo hi",
                    "--max-retries",
                    "1000000",
                ],
                "max_retries",
            ),
            (
                &[
                    "enqueue",
                    "--command",
                    "echo hi",
                    "--max-retries",
                    "100000000000000000000",
                ],
                "max-retries",
            ),
        ],
    );
});

backend_test!(nul_bytes, |env| {
    refuse_all(
        &env,
        &[
            (&["enqueue", r#"{"command":"echo a\u0000b"}"#], "nul"),
            (
                &["enqueue", r#"{"command":"echo hi","id":"a\u0000b"}"#],
                "id",
            ),
        ],
    );
    // A raw NUL byte cannot be passed in argv; it can come in a file or on stdin.
    let path = env.file("nul.jsonl");
    std::fs::write(&path, b"{\"command\":\"echo a\x00b\"}\n").unwrap();
    let before = env.snapshot();
    assert_usage_error(
        &env.run(&["enqueue", "--file", path.to_str().unwrap()]),
        "nul",
    );
    assert_eq!(env.snapshot(), before);
});

backend_test!(bad_ids, |env| {
    let long = "x".repeat(201);
    let long_json = format!(r#"{{"command":"echo hi","id":"{long}"}}"#);
    refuse_all(
        &env,
        &[
            (&["enqueue", r#"{"command":"echo hi","id":""}"#], "id"),
            (&["enqueue", "--id", "", "--command", "echo hi"], "id"),
            (&["enqueue", r#"{"command":"echo hi","id":"a\nb"}"#], "id"),
            (&["enqueue", &long_json], "id"),
        ],
    );
});

backend_test!(conflicting_job_forms, |env| {
    refuse_all(
        &env,
        &[
            (
                &["enqueue", r#"{"command":"echo a"}"#, "--command", "echo b"],
                "command",
            ),
            (
                &["enqueue", "--command", "echo a", "--", "echo", "b"],
                "once",
            ),
            (&["enqueue", r#"{"command":"echo a"}"#, "--id", "x"], "id"),
        ],
    );
});

backend_test!(unknown_list_state_names_the_valid_ones, |env| {
    populated(&env);
    let before = env.snapshot();
    for word in ["running", "PENDING", "done", ""] {
        let out = env.run(&["list", "--state", word]);
        assert_usage_error(&out, "pending");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for state in ["processing", "completed", "failed", "dead"] {
            assert!(
                stderr.contains(state),
                "the error names the valid states: {stderr}"
            );
        }
        assert_eq!(env.snapshot(), before);
    }
    assert_usage_error(&env.run(&["list", "--limit", "-1"]), "-1");
    assert_usage_error(&env.run(&["list", "--limit", "many"]), "limit");
    assert_eq!(env.snapshot(), before);
});

backend_test!(bad_worker_and_dlq_arguments, |env| {
    refuse_all(
        &env,
        &[
            (&["worker", "start", "--count", "0"], "count"),
            (&["worker", "start", "--count", "lots"], "count"),
            (&["worker", "stop", "--timeout=-1"], "timeout"),
            (&["dlq", "retry", "--all", "existing"], "all"),
            (&["dlq", "retry", ""], "empty"),
            (&["frobnicate"], "frobnicate"),
        ],
    );
    // No id at all: the message says how to name them, or to retry all (issue 12).
    let before = env.snapshot();
    env.assert_refused(&["dlq", "retry"], "--all", &before);
});

backend_test!(argument_errors_are_one_line_pointing_to_help, |env| {
    populated(&env);
    let before = env.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (&["enqueue", "--bogus"], "'--bogus'"),
        (&["worker", "start", "--count", "x"], "'x'"),
        (&["frobnicate"], "'frobnicate'"),
        (&["show"], "<ID>"),
        (&["config", "set"], "<KEY>, <VALUE>"),
        (&["list", "--state"], "--state"),
    ];
    for (args, needle) in cases {
        env.assert_refused(args, needle, &before);
        let stderr = String::from_utf8_lossy(&env.run(args).stderr).into_owned();
        assert!(
            stderr.contains("--help"),
            "names the help to read: {stderr}"
        );
    }
});

// Issue 15, defect 7: a command longer than one argument of `sh -c` may be
// (Linux's 128 KiB `MAX_ARG_STRLEN`, with its NUL) is refused at enqueue, exit 2,
// instead of failing E2BIG on every attempt; the longest that fits runs.
backend_test!(commands_too_long_to_run_are_refused_at_enqueue, |env| {
    let before = env.snapshot();
    let command = |len: usize| format!("echo {}", "x".repeat(len - "echo ".len()));
    let too_long = serde_json::json!({"command": command(128 * 1024)}).to_string();
    std::fs::write(env.file("long.jsonl"), format!("{too_long}\n")).expect("write");
    env.assert_refused(&["enqueue", "--file", "long.jsonl"], "script file", &before);
    assert_eq!(env.snapshot(), before);
    let fits = serde_json::json!({"command": command(128 * 1024 - 1), "id": "fits"});
    std::fs::write(env.file("fits.jsonl"), format!("{fits}\n")).expect("write");
    env.ok(&["enqueue", "--file", "fits.jsonl"]);
    env.spawn_workers(&[]);
    env.wait_state("fits", "completed", std::time::Duration::from_secs(60));
});
