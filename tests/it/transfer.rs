//! `export` and `import`: jobs move between stores with their attempts and output,
//! all or nothing. Each test runs on both stores, plus a SQLite -> PostgreSQL trip.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Backend, Env};

/// `queuectl export ARGS` as text (exit 0 asserted).
fn export(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    env.ok(&all)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad export line {l}: {e}")))
        .collect()
}

/// `queuectl import -` with `input` on stdin.
fn import_stdin(env: &Env, input: &str) -> Output {
    let mut child = env
        .cmd(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start queuectl import");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait for import")
}

fn import_file(env: &Env, input: &str) -> Output {
    let path = env.path().join("import.jsonl");
    std::fs::write(&path, input).expect("write the import file");
    env.run(&["import", &path.to_string_lossy()])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks that `out`, an import of `text` into `target`, succeeded and that the
/// target exports `text` again: every job, in order, field for field.
fn assert_exported_back(target: &Env, out: &Output, text: &str) {
    assert!(out.status.success(), "{}", stderr(out));
    assert_eq!(export(target, &[]), text, "the export is what was imported");
}

/// A store with a completed, a dead (two failed attempts) and a pending job.
fn populate(env: &mut Env) {
    env.ok(&["enqueue", "--command", "echo hello", "--id", "ok"]);
    env.ok(&[
        "enqueue",
        "--command",
        "echo oops; exit 3",
        "--id",
        "bad",
        "--max-retries",
        "1",
    ]);
    env.ok(&["config", "set", "backoff-base", "1"]);
    let pid = env.spawn_workers(&["--burst", "--count", "2"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(60)), Some(0));
    env.ok(&["enqueue", "--command", "echo later", "--id", "later"]);
}

backend_test!(export_prints_every_field_and_the_attempt_history, |env| {
    populate(&mut env);
    let jobs = lines(&export(&env, &[]));
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok", "bad", "later"], "creation order");
    for job in &jobs {
        for field in [
            "id",
            "command",
            "cwd",
            "state",
            "attempts",
            "max_retries",
            "interruptions",
            "created_at",
            "updated_at",
            "next_run_at",
            "exit_code",
            "last_error",
            "attempts_history",
        ] {
            assert!(job.get(field).is_some(), "{field} missing from {job}");
        }
    }
    assert_eq!(jobs[0]["state"], "completed");
    let history = jobs[0]["attempts_history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["outcome"], "succeeded");
    assert!(
        history[0]["output_tail"]
            .as_str()
            .unwrap()
            .contains("hello")
    );
    assert_eq!(jobs[1]["state"], "dead");
    assert_eq!(jobs[1]["attempts"], 2);
    let history = jobs[1]["attempts_history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|a| a["exit_code"] == 3 && a["output_tail"].as_str().unwrap().contains("oops"))
    );
    assert_eq!(jobs[2]["state"], "pending");
    assert_eq!(jobs[2]["attempts_history"], Value::Array(vec![]));

    let dead = lines(&export(&env, &["--state", "dead"]));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], "bad");
    let out = env.run(&["export", "--state", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pending"), "{}", stderr(&out));
});

backend_test!(a_large_export_streams_every_job_with_its_attempts, |env| {
    populate(&mut env);
    // ok (one attempt), bad (two) and later (none), as templates.
    let templates = lines(&export(&env, &[]));
    // More rows than one PostgreSQL round trip of the export reads (1,000), with
    // attempts on both sides of every batch boundary.
    let bulk: String = (0..2_500)
        .map(|i| {
            let mut job = templates[i % 3].clone();
            job["id"] = Value::from(format!("bulk-{i}"));
            format!("{job}\n")
        })
        .collect();
    let target = Env::new(env.backend).expect("same backend");
    assert_exported_back(&target, &import_file(&target, &bulk), &bulk);
});

backend_test!(
    import_recreates_jobs_exactly_and_runs_only_what_is_left,
    |env| {
        populate(&mut env);
        let text = export(&env, &[]);
        let mut target = Env::new(env.backend).expect("same backend");
        let out = import_file(&target, &text);
        assert_exported_back(&target, &out, &text);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Imported 3 jobs"));
        let bad = target.job("bad");
        assert_eq!(bad["state"], "dead");
        assert!(bad["output_tail"].as_str().unwrap().contains("oops"));
        assert_eq!(bad["history"].as_array().unwrap().len(), 2);
        // Only the pending job runs; the finished ones are history.
        let pid = target.spawn_workers(&["--burst"]);
        assert_eq!(target.wait_worker(pid, Duration::from_secs(60)), Some(0));
        assert_eq!(target.job("later")["state"], "completed");
        assert_eq!(target.job("ok")["attempts"], 1);
        assert_eq!(target.job("ok")["history"].as_array().unwrap().len(), 1);
        // Dead jobs can be retried in the new store; the history is kept.
        target.ok(&["dlq", "retry", "bad"]);
        assert_eq!(target.state("bad"), "pending");
    }
);

backend_test!(import_is_all_or_nothing, |env| {
    let line = |id: &str| {
        format!(
            r#"{{"id":"{id}","command":"true","cwd":"/tmp","state":"pending","attempts":0,"max_retries":3,"interruptions":0,"created_at":"2025-01-01T00:00:00.000Z","updated_at":"2025-01-01T00:00:00.000Z","next_run_at":"2025-01-01T00:00:00.000Z","exit_code":null,"last_error":null,"attempts_history":[]}}"#
        )
    };
    env.ok(&["enqueue", "--command", "true", "--id", "taken"]);
    // A duplicate of a stored job: exit 2 naming it, nothing imported.
    let out = import_file(&env, &format!("{}\n{}\n", line("new1"), line("taken")));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("'taken'"), "{}", stderr(&out));
    assert_eq!(env.run(&["show", "new1"]).status.code(), Some(1));
    // A duplicate inside the file.
    let out = import_stdin(&env, &format!("{}\n{}\n", line("x"), line("x")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2") && stderr(&out).contains("'x'"));
    // A bad line names its number.
    let out = import_stdin(&env, &format!("{}\n{{\"id\":1}}\n", line("y")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let out = import_stdin(&env, &line("z").replace("\"true\"", "\"\""));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("command"), "{}", stderr(&out));
    assert_eq!(env.json(&["list"]).as_array().map(Vec::len), Some(1));
    // A missing file is a usage error too.
    assert_eq!(
        env.run(&["import", "/nonexistent/jobs.jsonl"])
            .status
            .code(),
        Some(2)
    );
});

backend_test!(
    a_job_exported_while_processing_is_imported_as_pending,
    |env| {
        env.ok(&["enqueue", "--command", "sleep 30", "--id", "long"]);
        env.spawn_workers(&[]);
        crate::common::wait_until("the job runs", Duration::from_secs(20), || {
            env.state("long") == "processing"
        });
        let text = export(&env, &[]);
        assert_eq!(lines(&text)[0]["state"], "processing");
        let mut target = Env::new(env.backend).expect("same backend");
        let out = import_stdin(&target, &text.replace("sleep 30", "echo rerun"));
        assert!(out.status.success(), "{}", stderr(&out));
        let job = target.job("long");
        assert_eq!(job["state"], "pending");
        assert_eq!(job["attempts"], 0, "no attempt used up");
        let pid = target.spawn_workers(&["--burst"]);
        assert_eq!(target.wait_worker(pid, Duration::from_secs(60)), Some(0));
        let job = target.job("long");
        assert_eq!(job["state"], "completed");
        assert!(job["output_tail"].as_str().unwrap().contains("rerun"));
    }
);

#[test]
fn jobs_move_from_sqlite_to_postgres_and_back() {
    let Some(pg) = Env::new(Backend::Postgres) else {
        return;
    };
    let mut laptop = Env::sqlite();
    populate(&mut laptop);
    let text = export(&laptop, &[]);
    assert_exported_back(&pg, &import_stdin(&pg, &text), &text);
    assert_eq!(pg.json(&["status"])["dead"], 1);
    assert!(
        pg.job("ok")["output_tail"]
            .as_str()
            .unwrap()
            .contains("hello")
    );
    // And back into a fresh SQLite store.
    let back = Env::sqlite();
    let out = import_stdin(&back, &export(&pg, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(export(&back, &[]), text);
}
