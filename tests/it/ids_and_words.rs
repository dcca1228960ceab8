//! Fitting people's habits (issue 12): `enqueue -- WORDS` runs exactly the words
//! typed, words without `--` are refused with a hint, `enqueue --lines` takes one
//! shell command per line, and ids are short and can be typed by any unique prefix
//! wherever a command takes one.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Env, assert_error, assert_usage_error};

const SETTLE: Duration = Duration::from_secs(30);

/// Crockford's base32, lowercase: what generated ids are made of.
const CROCKFORD: &str = "0123456789abcdefghjkmnpqrstvwxyz";

/// `enqueue ARGS`; returns the id it printed.
fn enqueue(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["enqueue"];
    all.extend_from_slice(args);
    let out = env.ok(&all);
    out.trim()
        .strip_prefix("Enqueued: ")
        .unwrap_or_else(|| panic!("unexpected enqueue output: {out}"))
        .to_owned()
}

/// Runs every job that is ready, with one `worker start --burst`.
fn run_all(env: &mut Env) {
    let worker = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(worker, SETTLE), Some(0));
}

/// Every job's id, oldest first.
fn all_ids(env: &Env) -> Vec<String> {
    match env.json(&["list"]) {
        Value::Array(jobs) => jobs
            .iter()
            .map(|job| job["id"].as_str().unwrap_or_default().to_owned())
            .collect(),
        other => panic!("list --json is not an array: {other}"),
    }
}

/// The shortest start of `id` that no other job's id starts with.
fn unique_prefix(env: &Env, id: &str) -> String {
    let others: Vec<String> = all_ids(env).into_iter().filter(|o| o != id).collect();
    let n = (1..=id.len())
        .find(|&n| !others.iter().any(|o| o.starts_with(&id[..n])))
        .unwrap_or_else(|| panic!("{id} is a prefix of another id"));
    assert!(n < id.len(), "{id}: a prefix, not the whole id");
    id[..n].to_owned()
}

/// `queuectl ARGS` with `input` on stdin.
fn run_with_stdin(env: &Env, args: &[&str], input: &[u8]) -> Output {
    let mut child = env
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start queuectl");
    // A command refused before it reads stdin may have closed it already: the
    // write then fails, and the test looks at what the command said.
    let _ = child.stdin.take().expect("stdin is piped").write_all(input);
    child.wait_with_output().expect("wait for queuectl")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

backend_test!(words_after_double_dash_run_as_typed, |env| {
    let touch = enqueue(&env, &["--", "touch", "my file"]);
    let quote = enqueue(&env, &["--", "echo", "it's"]);
    let dollar = enqueue(&env, &["--", "printf", "%s|", "$HOME", "a  b", ""]);
    // `show` displays the command as stored: the words, quoted.
    let shown = env.ok(&["show", &touch]);
    assert!(shown.contains("touch 'my file'"), "{shown}");
    assert_eq!(env.job(&touch)["command"], "touch 'my file'");
    run_all(&mut env);
    for id in [&touch, &quote, &dollar] {
        assert_eq!(env.state(id), "completed", "{}", env.job(id));
    }
    assert!(env.file("my file").is_file(), "one file named 'my file'");
    assert!(!env.file("my").exists() && !env.file("file").exists());
    assert_eq!(env.ok(&["logs", &quote]), "it's\n");
    assert_eq!(
        env.ok(&["logs", &dollar]),
        "$HOME|a  b||",
        "each word is one argument, nothing expanded"
    );
});

backend_test!(one_word_after_double_dash_is_a_shell_command_line, |env| {
    let line = enqueue(&env, &["--", "echo a && echo b"]);
    let explicit = enqueue(&env, &["--command", "echo c; echo d"]);
    assert_eq!(env.job(&line)["command"], "echo a && echo b");
    run_all(&mut env);
    assert_eq!(env.ok(&["logs", &line]), "a\nb\n");
    assert_eq!(env.ok(&["logs", &explicit]), "c\nd\n");
});

backend_test!(words_without_double_dash_are_refused_with_a_hint, |env| {
    env.ensure_store();
    let before = env.snapshot();
    env.assert_refused(
        &["enqueue", "echo", "hello"],
        "looks like a command",
        &before,
    );
    let out = env.run(&["enqueue", "echo", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("queuectl enqueue -- echo hello")
            && stderr.contains("--command 'echo hello'"),
        "{stderr}"
    );
    env.assert_refused(&["enqueue", "make"], "enqueue -- make", &before);
    assert!(all_ids(&env).is_empty(), "no job was created");
    // A JSON job is still a positional argument.
    let id = enqueue(&env, &[r#"{"command":"echo json"}"#]);
    assert_eq!(env.job(&id)["command"], "echo json");
});

backend_test!(generated_ids_are_short_and_differ_from_the_start, |env| {
    let ids: Vec<String> = (0..12).map(|_| env.enqueue("true")).collect();
    for id in &ids {
        assert_eq!(id.len(), 12, "{id}");
        assert!(id.chars().all(|c| CROCKFORD.contains(c)), "{id}");
    }
    let firsts: std::collections::HashSet<char> =
        ids.iter().filter_map(|id| id.chars().next()).collect();
    assert!(
        firsts.len() > 1,
        "jobs enqueued together start differently: {ids:?}"
    );
    // Order is the store's, not the ids': list shows them as enqueued.
    assert_eq!(all_ids(&env), ids);
});

backend_test!(a_unique_prefix_works_wherever_an_id_is_taken, |env| {
    let ok = env.enqueue("echo ok");
    let dead = enqueue(&env, &["--max-retries", "0", "--command", "exit 3"]);
    run_all(&mut env);
    let p = unique_prefix(&env, &ok);
    assert_eq!(env.job(&p)["id"], ok.as_str(), "show --json");
    assert!(env.ok(&["show", &p]).contains(&ok), "show");
    assert_eq!(env.ok(&["logs", &p]), "ok\n", "logs");
    assert!(env.run(&["wait", &p]).status.success(), "wait");
    let after = enqueue(&env, &["--after", &p, "--delay", "1h", "--", "true"]);
    assert_eq!(
        env.job(&after)["after"],
        serde_json::json!([ok]),
        "enqueue --after"
    );
    let d = unique_prefix(&env, &dead);
    assert_eq!(env.ok(&["dlq", "retry", &d]), format!("Retried: {dead}\n"));
    let a = unique_prefix(&env, &after);
    assert_eq!(env.ok(&["cancel", &a]), format!("Cancelled: {after}\n"));
    assert_eq!(env.ok(&["retry", &a]), format!("Retried: {after}\n"));
    // Two prefixes of one job name it once.
    assert_eq!(
        env.ok(&["cancel", &a, &after]),
        format!("Cancelled: {after}\n")
    );
});

backend_test!(an_exact_id_wins_and_an_ambiguous_prefix_is_refused, |env| {
    for id in [
        "deploy", "deploy-1", "deploy-2", "deploy-3", "deploy-4", "deploy-5", "deploy-6",
    ] {
        enqueue(&env, &["--id", id, "--delay", "1h", "--", "true"]);
    }
    let old = "01a21f60-4507-70e0-958f-583c22bed934";
    enqueue(&env, &["--id", old, "--delay", "1h", "--", "true"]);
    enqueue(
        &env,
        &["--id", "01a21f60-4507-70e0-958f-583c22bed935", "--", "true"],
    );
    assert_eq!(env.job("deploy")["id"], "deploy", "the exact id wins");
    assert_eq!(env.job(old)["id"], old);
    assert_eq!(env.job("deploy-3")["id"], "deploy-3");
    let before = env.snapshot();
    for args in [
        &["show", "dep"][..],
        &["logs", "dep"],
        &["wait", "dep"],
        &["cancel", "deploy-1", "dep"],
        &["retry", "dep"],
        &["dlq", "retry", "dep"],
        &["enqueue", "--after", "dep", "--", "true"],
    ] {
        env.assert_refused(args, "more characters", &before);
    }
    let out = env.run(&["show", "dep"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("matches 7 jobs")
            && stderr.contains("deploy, deploy-1, deploy-2, deploy-3, deploy-4 and 2 more"),
        "{stderr}"
    );
    let out = env.run(&["cancel", "01a21f60-4507"]);
    assert_usage_error(&out, "01a21f60-4507-70e0-958f-583c22bed935");
    // No job starts with it: each command's own "no such job".
    assert_error(&env.run(&["show", "nosuch"]), 1, "no job with id 'nosuch'");
    assert_error(&env.run(&["cancel", "nosuch"]), 1, "nosuch");
    assert_eq!(env.snapshot(), before);
});

backend_test!(lines_enqueue_one_shell_command_per_line, |env| {
    std::fs::write(
        env.file("commands.txt"),
        "echo one\n\n   \n# a comment, skipped\necho two | tr o 0\r\n  echo 'three  spaces'\n",
    )
    .expect("write commands.txt");
    let out = env.ok(&[
        "enqueue",
        "--lines",
        "commands.txt",
        "--queue",
        "batch",
        "--priority",
        "3",
    ]);
    let ids: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 3, "{out}");
    let jobs: Vec<Value> = ids.iter().map(|id| env.job(id)).collect();
    let commands: Vec<&str> = jobs
        .iter()
        .map(|j| j["command"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        commands,
        ["echo one", "echo two | tr o 0", "  echo 'three  spaces'"]
    );
    for job in &jobs {
        assert_eq!(
            (job["queue"].as_str(), job["priority"].as_i64()),
            (Some("batch"), Some(3))
        );
    }
    let from_stdin = run_with_stdin(
        &env,
        &["enqueue", "--lines", "-", "--json"],
        b"echo four\necho five",
    );
    assert!(from_stdin.status.success(), "{from_stdin:?}");
    let stdin_ids: Vec<String> =
        serde_json::from_slice::<Vec<String>>(&from_stdin.stdout).expect("--json prints the ids");
    assert_eq!(stdin_ids.len(), 2);
    run_all(&mut env);
    let outputs: Vec<String> = ids
        .iter()
        .chain(&stdin_ids)
        .map(|id| env.ok(&["logs", id]))
        .collect();
    assert_eq!(
        outputs,
        ["one\n", "tw0\n", "three  spaces\n", "four\n", "five\n"]
    );
});

backend_test!(lines_are_all_or_nothing, |env| {
    env.enqueue("true");
    let before = env.snapshot();
    let cases: [(&[u8], &str); 4] = [
        (b"echo a\necho b\necho \xff\necho d\n", "line 3"),
        (b"echo a\n\necho \0b\n", "line 3"),
        // An unterminated quote: a job that would fail every attempt.
        (
            b"echo a\necho \"it's\necho c\n",
            "line 2: /bin/sh cannot parse it",
        ),
        (b"echo a\necho b\n", "--id"),
    ];
    for (input, needle) in cases {
        let out = if needle == "--id" {
            run_with_stdin(&env, &["enqueue", "--lines", "-", "--id", "x"], input)
        } else {
            run_with_stdin(&env, &["enqueue", "--lines", "-"], input)
        };
        assert_usage_error(&out, needle);
        assert_eq!(env.snapshot(), before, "nothing was enqueued: {out:?}");
    }
    std::fs::write(env.file("bad.txt"), b"echo a\necho \xffb\n").expect("write bad.txt");
    env.assert_refused(
        &["enqueue", "--lines", "bad.txt"],
        "bad.txt: line 2",
        &before,
    );
    env.assert_refused(
        &["enqueue", "--lines", "missing.txt"],
        "cannot read missing.txt",
        &before,
    );
    assert_eq!(stdout_of(&env.run(&["enqueue", "--lines", "bad.txt"])), "");
});

backend_test!(cron_add_takes_words_after_double_dash_the_same_way, |env| {
    env.ok(&["cron", "add", "words", "@daily", "--", "touch", "my file"]);
    env.ok(&["cron", "add", "line", "@daily", "--", "echo a && echo b"]);
    let entries = env.cron_entries();
    let command = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["job"]["command"].clone())
            .unwrap_or_else(|| panic!("no entry {name}: {entries:?}"))
    };
    assert_eq!(command("words"), "touch 'my file'");
    assert_eq!(command("line"), "echo a && echo b");
});
