//! PostgreSQL-only behaviour: what has no SQLite counterpart (schemas, migrations
//! racing across machines, passwords in URLs). Each test returns early, saying it was
//! skipped, when `QUEUECTL_TEST_POSTGRES_URL` is unset.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, Env, bin, postgres_url};

/// The test's schema and the server URL without it.
fn schema_and_base(env: &Env) -> (String, String) {
    let schema = env
        .db
        .rsplit("schema=")
        .next()
        .unwrap_or_default()
        .to_owned();
    let base = env.db.split('?').next().unwrap_or_default().to_owned();
    (schema, base)
}

fn psql(base: &str, sql: &str) {
    let status = Command::new("psql")
        .args([base, "-qc", sql])
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql failed: {sql}");
}

#[test]
fn concurrent_first_starts_on_an_empty_schema_all_succeed() {
    let Some(env) = Env::new(Backend::Postgres) else {
        return;
    };
    // Several "machines" start at once on a schema that does not exist yet: the
    // advisory lock around migrations must make every one of them succeed.
    let children: Vec<_> = (0..6)
        .map(|i| {
            env.cmd(&[
                "enqueue",
                "--command",
                "true",
                "--id",
                &format!("first-{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start queuectl")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for queuectl");
        assert!(
            out.status.success(),
            "a concurrent first start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let jobs = env.json(&["list"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(6), "{jobs}");
}

#[test]
fn a_schema_from_a_newer_queuectl_is_refused() {
    let Some(env) = Env::new(Backend::Postgres) else {
        return;
    };
    env.enqueue("true");
    let (schema, base) = schema_and_base(&env);
    psql(
        &base,
        &format!("UPDATE \"{schema}\".schema_version SET version = 999"),
    );
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("999") && stderr.contains("newer") && stderr.contains("upgrade"),
        "unclear message: {stderr}"
    );
    // Nothing was touched: the version is still the newer one.
    assert_eq!(env.run(&["list"]).status.code(), Some(2));
}

#[test]
fn an_unreachable_server_fails_fast_naming_the_host_but_never_the_password() {
    if postgres_url().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["status"][..],
        &["enqueue", "--command", "true"],
        &["worker", "list"],
    ] {
        let started = Instant::now();
        let out = Command::new(bin())
            .args(args)
            .current_dir(dir.path())
            .env("QUEUECTL_DB", "postgres://postgres:s3cret@127.0.0.1:1/test")
            .env("QUEUECTL_HOME", dir.path().join("home"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run queuectl");
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            elapsed < Duration::from_secs(5),
            "{args:?} took {elapsed:?}"
        );
        assert!(
            stderr.contains("127.0.0.1:1"),
            "{args:?}: host not named: {stderr}"
        );
        assert!(
            !stderr.contains("s3cret") && !stdout.contains("s3cret"),
            "{args:?}: password printed: {stdout} {stderr}"
        );
    }
}

#[test]
fn schemas_keep_queues_in_one_database_apart() {
    let (Some(a), Some(mut b)) = (Env::new(Backend::Postgres), Env::new(Backend::Postgres)) else {
        return;
    };
    b.ensure_store();
    let id = a.enqueue("true");
    assert_eq!(a.json(&["status"])["pending"], 1);
    assert_eq!(b.json(&["status"])["pending"], 0);
    assert_eq!(b.run(&["show", &id]).status.code(), Some(1));
}

/// Issue 15, defect 4: the scheme's case does not matter, and libpq key=value
/// settings (as `psql` takes them) name a PostgreSQL store too; both reach the same
/// schema as the canonical URL.
#[test]
fn uppercase_schemes_and_libpq_settings_are_postgres() {
    let Some(env) = Env::new(Backend::Postgres) else {
        return;
    };
    let (schema, base) = schema_and_base(&env);
    let id = env.enqueue("true");
    let upper = base.replacen("postgres://", "POSTGRESQL://", 1) + "?schema=" + &schema;
    let rest = base
        .strip_prefix("postgres://")
        .expect("a postgres:// test URL");
    let (user, rest) = rest.split_once('@').expect("user@host in the test URL");
    let (hostport, dbname) = rest.split_once('/').expect("a database in the test URL");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let settings = format!("host={host} port={port} user={user} dbname={dbname} schema={schema}");
    for db in [upper, settings] {
        let out = Command::new(bin())
            .args(["--db", &db, "--json", "show", &id])
            .current_dir(env.path())
            .output()
            .expect("run queuectl");
        assert!(out.status.success(), "{db}: {out:?}");
    }
    // Nothing was created in the working directory under the URL's name.
    let files: Vec<_> = std::fs::read_dir(env.path())
        .expect("read the test directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("POSTGRES"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}
