//! Stores that are missing or read-only (issue #15, defects 4 and 9): a command that
//! only reads never creates a store, and reads a store it may not write; a command
//! that writes to a read-only store is refused in one line naming the store and why.
//!
//! A read-only SQLite store is made by bind-mounting its directory read-only (root
//! ignores file modes, not a read-only mount); a read-only PostgreSQL store by
//! connecting with `default_transaction_read_only=on`, as on a standby.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{Backend, Env, assert_error};

/// Every command that only reads, with a job id to read where it takes one.
fn reading_commands(id: &str) -> Vec<Vec<String>> {
    let words: &[&[&str]] = &[
        &["status"],
        &["list"],
        &["show", id],
        &["logs", id],
        &["wait", id, "--timeout", "1"],
        &["stats"],
        &["metrics"],
        &["export"],
        &["config", "list"],
        &["config", "get", "max-retries"],
        &["worker", "list"],
        &["queue", "list"],
        &["dlq", "list"],
        &["cron", "list"],
    ];
    words
        .iter()
        .map(|w| w.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

/// Commands that write, each of which a read-only store must refuse.
fn writing_commands(id: &str, import: &str) -> Vec<Vec<String>> {
    let words: &[&[&str]] = &[
        &["enqueue", "--command", "echo more"],
        &["cancel", id],
        &["retry", id],
        &["clean"],
        &["config", "set", "max-retries", "7"],
        &["queue", "pause", "default"],
        &["cron", "add", "nightly", "0 3 * * *", "--", "true"],
        &["import", import],
        &["dlq", "retry", "--all"],
        &["worker", "start", "--burst"],
    ];
    words
        .iter()
        .map(|w| w.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

fn as_strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

/// The PostgreSQL schema of `env`'s store.
fn schema_of(env: &Env) -> String {
    env.db
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("schema="))
        .expect("the test URL names its schema")
        .to_owned()
}

/// Whether `env`'s PostgreSQL schema exists.
fn schema_exists(env: &Env) -> bool {
    let url = crate::common::postgres_url().expect("PostgreSQL URL");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema_of(env)],
        )
        .expect("query");
    row.get::<_, i64>(0) > 0
}

/// Every path under `dir`, to check that nothing was created.
fn paths_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(paths_under(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

/// How the store is named in messages: its path, or its schema.
fn store_name(env: &Env) -> String {
    match env.backend {
        Backend::Sqlite => env.db.clone(),
        Backend::Postgres => schema_of(env),
    }
}

backend_test!(reading_commands_never_create_a_store, |env| {
    let before = paths_under(env.path());
    for args in reading_commands("nosuchjob") {
        let out = env.run(&as_strs(&args));
        assert_error(&out, 1, "no queuectl store");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&store_name(&env)) && stderr.contains("queuectl init"),
            "`{}`: the error names the store and how to create it: {stderr}",
            args.join(" ")
        );
        match env.backend {
            Backend::Sqlite => assert_eq!(
                paths_under(env.path()),
                before,
                "`{}` created files",
                args.join(" ")
            ),
            Backend::Postgres => assert!(
                !schema_exists(&env),
                "`{}` created the schema",
                args.join(" ")
            ),
        }
    }
    // `init` creates it, once; then the same commands read an empty store.
    let created = env.json(&["init"]);
    assert_eq!(created["created"], true, "{created}");
    assert_eq!(env.json(&["init"])["created"], false);
    assert_eq!(env.status()["total"], 0);
    env.ok(&["list"]);
    env.ok(&["export"]);
});

/// `dir` bind-mounted read-only onto itself for as long as this lives (root only).
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    /// `None`, with the reason printed, where this process may not mount.
    fn new(dir: &Path) -> Option<ReadOnlyMount> {
        let mount = |args: &[&str]| -> Output {
            Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .output()
                .expect("run mount")
        };
        let bound = mount(&["--bind"]);
        if !bound.status.success() {
            eprintln!(
                "skipped: cannot bind-mount a directory here (needs root and mount rights): {}",
                String::from_utf8_lossy(&bound.stderr).trim()
            );
            return None;
        }
        let guard = ReadOnlyMount(dir.to_owned());
        let read_only = mount(&["-o", "remount,bind,ro"]);
        if !read_only.status.success() {
            eprintln!(
                "skipped: cannot remount a bind mount read-only here: {}",
                String::from_utf8_lossy(&read_only.stderr).trim()
            );
            return None;
        }
        Some(guard)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// What the read-only tests compare before and after: every job with its
/// attempts and output, and the settings.
fn contents(env: &Env, db: &str) -> (String, String) {
    let read = |args: &[&str]| {
        let out = env.cmd(args).env("QUEUECTL_DB", db).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (read(&["export"]), read(&["config", "list"]))
}

/// Reads and refused writes against a read-only store reached through `db`.
fn reads_work_and_writes_are_refused(env: &Env, db: &str, id: &str, why: &str) {
    let before = contents(env, db);
    let import = env.file("import.jsonl");
    for args in reading_commands(id) {
        let out = env
            .cmd(&as_strs(&args))
            .env("QUEUECTL_DB", db)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "`{}` on a read-only store: {:?} {stderr}",
            args.join(" "),
            out.status.code()
        );
    }
    let run = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = env.cmd(&all).env("QUEUECTL_DB", db).output().unwrap();
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    assert_eq!(run(&["show", id])["state"], "completed");
    assert_eq!(run(&["status"])["total"], 2);
    for args in writing_commands(id, import.to_str().unwrap()) {
        let out = env
            .cmd(&as_strs(&args))
            .env("QUEUECTL_DB", db)
            .output()
            .unwrap();
        assert_error(&out, 2, "cannot write to the store");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&store_name(env)) && stderr.to_lowercase().contains(why),
            "`{}`: the error names the store and the problem ({why}): {stderr}",
            args.join(" ")
        );
    }
    assert_eq!(
        contents(env, db),
        before,
        "a refused write changed the store"
    );
}

/// A store with one completed job (with output) and one pending job; returns the
/// completed job's id, and writes an `import` file of one new job.
fn fill(env: &mut Env) -> String {
    let id = env.enqueue("echo from-the-job");
    env.ok(&["worker", "start", "--burst"]);
    assert_eq!(env.state(&id), "completed");
    let later = env.enqueue("echo later");
    // An `import` file of one new job: the pending job's record under a new id.
    let export = env.ok(&["export", "--state", "pending"]);
    let mut record: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(record["id"], later.as_str());
    record["id"] = "imported".into();
    std::fs::write(env.file("import.jsonl"), format!("{record}\n")).unwrap();
    id
}

#[test]
fn a_read_only_sqlite_store_can_be_read_and_refuses_writes() {
    let mut env = Env::sqlite();
    let id = fill(&mut env);
    let home = env.path().join("home");
    let Some(_mount) = ReadOnlyMount::new(&home) else {
        return;
    };
    let db = env.db.clone();
    reads_work_and_writes_are_refused(&env, &db, &id, "read-only file system");
}

#[test]
fn a_read_only_sqlite_store_without_its_wal_file_can_be_read() {
    let mut env = Env::sqlite();
    let id = fill(&mut env);
    // Fold the WAL into the database and close the last connection the way SQLite
    // does by default, which deletes the -wal and -shm files.
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let wal = PathBuf::from(format!("{}-wal", env.db));
    assert!(!wal.exists(), "the -wal file is gone before the mount");
    let home = env.path().join("home");
    let Some(_mount) = ReadOnlyMount::new(&home) else {
        return;
    };
    let db = env.db.clone();
    reads_work_and_writes_are_refused(&env, &db, &id, "read-only file system");
    assert!(!wal.exists());
}

#[test]
fn a_read_only_postgres_store_can_be_read_and_refuses_writes() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let id = fill(&mut env);
    // As on a standby, or for a role whose transactions are read-only.
    let db = format!("{}&options=-c%20default_transaction_read_only%3Don", env.db);
    reads_work_and_writes_are_refused(&env, &db, &id, "read-only transaction");
}
