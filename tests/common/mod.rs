//! Shared helpers for the black-box tests: every test drives the real `queuectl`
//! binary against a store of its own (a temporary SQLite file, or a PostgreSQL schema
//! of its own), so tests run in parallel and leave nothing behind.
//!
//! Nothing here sleeps for a fixed time to wait for an outcome: [`wait_until`] polls
//! with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

mod pg_server;
mod proxy;
mod pty;
mod schedule;
mod system;
pub use pg_server::*;
pub use proxy::*;
pub use pty::*;
pub use schedule::*;
pub use system::*;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_queuectl"))
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests, from `QUEUECTL_TEST_POSTGRES_URL`. Without it the
/// PostgreSQL variant of a test prints that it was skipped, unless `CI` is set, in
/// which case it fails: CI must never skip them silently.
pub fn postgres_url() -> Option<String> {
    match std::env::var("QUEUECTL_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but QUEUECTL_TEST_POSTGRES_URL is not: PostgreSQL tests must run in CI"
            );
            eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set, PostgreSQL test not run");
            None
        }
    }
}

/// A scratch directory and store for one test.
pub struct Env {
    pub dir: TempDir,
    pub db: String,
    pub backend: Backend,
    children: Vec<Child>,
    /// Files the spawned workers' stderr goes to; printed if the test panics.
    logs: Vec<PathBuf>,
    /// Whether [`Env::ensure_store`] has run.
    store_ready: bool,
}

impl Env {
    /// A fresh environment on `backend`, or `None` when that backend is unavailable
    /// (the test then returns early; see [`postgres_url`]).
    pub fn new(backend: Backend) -> Option<Env> {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let db = match backend {
            Backend::Sqlite => dir
                .path()
                .join("home/queue.db")
                .to_string_lossy()
                .into_owned(),
            Backend::Postgres => {
                let url = postgres_url()?;
                // A UUIDv7 in simple form is 32 hex digits: with the prefix, a valid
                // unquoted identifier well under PostgreSQL's 63-byte limit, and
                // leftover schemas sort by the time their test started.
                let schema = format!("qt_{}", uuid::Uuid::now_v7().simple());
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}schema={schema}")
            }
        };
        Some(Env {
            dir,
            db,
            backend,
            children: Vec::new(),
            logs: Vec::new(),
            store_ready: false,
        })
    }

    pub fn sqlite() -> Env {
        Env::new(Backend::Sqlite).expect("SQLite is always available")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `queuectl` command with this environment's store, home and directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        self.configure(&mut cmd);
        cmd
    }

    /// Points `cmd` at this environment's store, home and directory.
    fn configure(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path())
            .env("QUEUECTL_DB", &self.db)
            .env("QUEUECTL_HOME", self.dir.path().join("home"))
            .env("NO_COLOR", "1")
            .env_remove("QUEUECTL_HOSTNAME")
            .stdin(Stdio::null());
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run queuectl")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`queuectl {}` failed with {:?}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`queuectl {}` printed invalid JSON ({e}): {stdout}",
                all.join(" ")
            )
        })
    }

    /// Enqueues `command` and returns the job id.
    pub fn enqueue(&self, command: &str) -> String {
        let out = self.ok(&["enqueue", "--command", command]);
        out.trim()
            .strip_prefix("Enqueued: ")
            .unwrap_or_else(|| panic!("unexpected enqueue output: {out}"))
            .to_owned()
    }

    /// One job as JSON.
    pub fn job(&self, id: &str) -> Value {
        self.json(&["show", id])
    }

    pub fn state(&self, id: &str) -> String {
        self.job(id)["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Creates the store (with `init`) if this test has not used it yet. Workers
    /// start in the background while the test polls the store, so without this two
    /// processes would race to create a brand-new store; that race has tests of its
    /// own (`store_files`) and is kept out of every other test.
    pub fn ensure_store(&mut self) {
        if !self.store_ready {
            self.ok(&["init"]);
            self.store_ready = true;
        }
    }

    /// Starts `queuectl worker start ARGS` in the background (killed when the Env drops).
    pub fn spawn_workers(&mut self, args: &[&str]) -> u32 {
        self.spawn_workers_with(args, &[])
    }

    /// Like [`Env::spawn_workers`] but with extra environment variables. The
    /// process's stderr goes to a log file in the test directory, printed if the
    /// test fails.
    pub fn spawn_workers_with(&mut self, args: &[&str], vars: &[(&str, &str)]) -> u32 {
        self.ensure_store();
        let mut all = vec!["worker", "start"];
        all.extend_from_slice(args);
        let mut cmd = self.cmd(&all);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        self.spawn_logged(cmd)
    }

    /// Starts `queuectl ARGS` (a long-running command such as `dashboard`) in the
    /// background, like [`Env::spawn_workers_with`]: stderr logged, killed when the
    /// Env drops. Returns the process's pid.
    pub fn spawn_with(&mut self, args: &[&str], vars: &[(&str, &str)]) -> u32 {
        self.ensure_store();
        let mut cmd = self.cmd(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        self.spawn_logged(cmd)
    }

    /// Starts `cmd` in the background with its stderr in `worker-N.log` (printed if
    /// the test fails); the process is killed when the Env drops.
    fn spawn_logged(&mut self, mut cmd: Command) -> u32 {
        let log = self
            .dir
            .path()
            .join(format!("worker-{}.log", self.logs.len() + 1));
        let file = std::fs::File::create(&log).expect("create a worker log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start workers");
        let pid = child.id();
        self.children.push(child);
        self.logs.push(log);
        pid
    }

    /// A `queuectl` command run from `dir` instead of the test directory.
    pub fn cmd_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = self.cmd(args);
        cmd.current_dir(dir);
        cmd
    }

    /// A path inside the test directory (where jobs run by default).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The contents of a file in the test directory, or "" if it does not exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Enqueues a JSON job object and returns the id `enqueue` printed.
    pub fn enqueue_json(&self, job: &Value) -> String {
        let out = self.ok(&["enqueue", &job.to_string()]);
        out.trim()
            .strip_prefix("Enqueued: ")
            .unwrap_or_else(|| panic!("unexpected enqueue output: {out}"))
            .to_owned()
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    /// `worker list --json` (with `--all` if `all`).
    pub fn workers(&self, all: bool) -> Vec<Value> {
        let args: &[&str] = if all {
            &["worker", "list", "--all"]
        } else {
            &["worker", "list"]
        };
        match self.json(args) {
            Value::Array(workers) => workers,
            other => panic!("worker list --json is not an array: {other}"),
        }
    }

    /// Polls until job `id` is in `state`; returns the job.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let mut job = Value::Null;
        wait_until(&format!("job {id} to be {state}"), timeout, || {
            job = self.job(id);
            job["state"] == state
        });
        job
    }

    /// Polls until `n` workers are live (registered and heartbeating).
    pub fn wait_live_workers(&self, n: usize, timeout: Duration) {
        wait_until(&format!("{n} live worker(s)"), timeout, || {
            self.workers(false).len() >= n
        });
    }

    /// Runs `args` and checks it is refused as bad input (exit 2, one line naming
    /// `needle`) and that the store still looks like `before` (a [`Env::snapshot`]).
    pub fn assert_refused(&self, args: &[&str], needle: &str, before: &Value) {
        let out = self.run(args);
        assert_usage_error(&out, needle);
        assert_eq!(
            self.snapshot(),
            *before,
            "`queuectl {}` changed the store",
            args.join(" ")
        );
    }

    /// Everything a user can see of the store: jobs, settings and workers. Commands
    /// that must not change the store are checked by comparing this before and after.
    /// A store that does not exist (reading commands never create one) is
    /// `"no store"`, so a refused command must not create it either.
    pub fn snapshot(&self) -> Value {
        let probe = self.run(&["list", "--json"]);
        if !probe.status.success()
            && String::from_utf8_lossy(&probe.stderr).contains("no queuectl store")
        {
            return Value::from("no store");
        }
        serde_json::json!({
            "jobs": self.json(&["list"]),
            "config": self.json(&["config", "list"]),
            "workers": self.json(&["worker", "list", "--all"]),
        })
    }

    /// Starts `WRAPPER... queuectl worker start ARGS` (e.g. under `faketime`) with extra
    /// environment variables; its stderr goes to `worker-N.log` in the test directory.
    pub fn spawn_workers_wrapped(
        &mut self,
        wrapper: &[&str],
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> u32 {
        self.ensure_store();
        let (program, prefix) = wrapper.split_first().expect("a wrapper program");
        let mut cmd = Command::new(program);
        cmd.args(prefix)
            .arg(bin())
            .args(["worker", "start"])
            .args(args);
        self.configure(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        self.spawn_logged(cmd)
    }

    /// Whether a spawned worker process is still running.
    pub fn is_running(&mut self, pid: u32) -> bool {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a worker this Env started");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for a spawned worker process to exit; returns its exit code (`None` if a
    /// signal ended it).
    pub fn wait_worker(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a worker this Env started");
        let mut status = None;
        wait_until(&format!("worker {pid} to exit"), timeout, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.and_then(|s| s.code())
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to a spawned worker process.
    pub fn signal(&self, pid: u32, signal: libc::c_int) {
        let target = libc::pid_t::try_from(pid).expect("a pid fits in pid_t");
        // SAFETY: kill takes plain integers and touches no memory of ours; `target`
        // is a child this Env started and has not reaped, so the pid is still ours.
        let rc = unsafe { libc::kill(target, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("--- {} ---\n{text}", log.display());
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.backend == Backend::Postgres {
            // Leave nothing behind: drop this test's schema.
            if let Some(schema) = self.db.rsplit("schema=").next() {
                let base = self.db.split('?').next().unwrap_or_default();
                let _ = Command::new("psql")
                    .args([
                        base,
                        "-qc",
                        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns true; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that a command was refused as bad input: exit 2, nothing on stdout, and on
/// stderr one line that starts with `error:` and mentions `needle` (case-insensitive).
pub fn assert_usage_error(out: &Output, needle: &str) {
    assert_error(out, 2, needle);
}

/// Like [`assert_usage_error`] for any exit code.
pub fn assert_error(out: &Output, code: i32, needle: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.trim().is_empty(),
        "expected nothing on stdout, got: {stdout}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected a one-line error, got: {stderr}"
    );
    assert!(
        stderr.starts_with("error: "),
        "expected `error: ...` on stderr, got: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&needle.to_lowercase()),
        "expected the error to mention {needle:?}, got: {stderr}"
    );
}

/// Generates `#[test] fn sqlite()` and `#[test] fn postgres()` in a module named
/// after the test, both running `$body` with an [`Env`] for that backend.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, |$env:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body(#[allow(unused_mut)] mut $env: $crate::common::Env) $body

            #[test]
            fn sqlite() {
                body($crate::common::Env::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(env) = $crate::common::Env::new($crate::common::Backend::Postgres) {
                    body(env);
                }
            }
        }
    };
}
