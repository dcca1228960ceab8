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
                let schema = format!("qt_{}", uuid_like());
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}schema={schema}")
            }
        };
        Some(Env {
            dir,
            db,
            backend,
            children: Vec::new(),
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

    /// Starts `queuectl worker start ARGS` in the background (killed when the Env drops).
    pub fn spawn_workers(&mut self, args: &[&str]) -> u32 {
        let mut all = vec!["worker", "start"];
        all.extend_from_slice(args);
        let child = self
            .cmd(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start workers");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Like [`Env::spawn_workers`] but with extra environment variables.
    pub fn spawn_workers_with(&mut self, args: &[&str], vars: &[(&str, &str)]) -> u32 {
        let mut all = vec!["worker", "start"];
        all.extend_from_slice(args);
        let mut cmd = self.cmd(&all);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start workers");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts `WRAPPER... queuectl worker start ARGS` (e.g. under `faketime`) with extra
    /// environment variables; its stderr goes to `worker-N.log` in the test directory.
    pub fn spawn_workers_wrapped(
        &mut self,
        wrapper: &[&str],
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> u32 {
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
        let log = self
            .dir
            .path()
            .join(format!("worker-{}.log", self.children.len()));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create a worker log"))
            .spawn()
            .expect("start workers");
        let pid = child.id();
        self.children.push(child);
        pid
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

    /// Waits for a spawned worker process to exit; returns its exit code.
    pub fn wait_worker(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a worker this Env started");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() >= deadline {
                panic!("worker {pid} did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to a spawned worker process.
    pub fn signal(&self, pid: u32, signal: i32) {
        let rc = unsafe { libc_kill(pid as i32, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
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

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

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

/// A short random-enough token for schema and file names.
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
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
