//! Many processes on one store at once: no command may fail because another one holds
//! the store (no `database is locked` may ever reach the user).

use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{Env, wait_until};

/// Commands that failed, collected from several threads.
#[derive(Default)]
struct Failures(Mutex<Vec<String>>);

impl Failures {
    /// Runs `queuectl ARGS` and records it if it fails.
    fn run(&self, env: &Env, args: &[&str]) {
        let out = env.run(args);
        if !out.status.success() {
            self.0.lock().unwrap().push(format!(
                "`queuectl {}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }

    fn assert_none(self) {
        let failures = self.0.into_inner().unwrap();
        assert!(
            failures.is_empty(),
            "{} command(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Runs 4 threads x 25 rounds of `enqueue --command 'echo T-I >> ran.txt'` followed by
/// `others`, while `meanwhile` runs on this thread; then asserts that no command
/// failed and that each of the 100 jobs ran once. Returns what `meanwhile` returned,
/// which lives until the jobs have run.
fn burst<R>(env: &Env, others: &[&[&str]], meanwhile: impl FnOnce() -> R) -> R {
    let failures = Failures::default();
    let kept = std::thread::scope(|scope| {
        for t in 0..4 {
            let failures = &failures;
            scope.spawn(move || {
                for i in 0..25 {
                    let enqueue = format!("echo {t}-{i} >> ran.txt");
                    failures.run(env, &["enqueue", "--command", &enqueue]);
                    for args in others {
                        failures.run(env, args);
                    }
                }
            });
        }
        meanwhile()
    });
    failures.assert_none();
    wait_until("100 completed jobs", Duration::from_secs(120), || {
        env.status()["completed"] == 100
    });
    assert_eq!(env.read("ran.txt").lines().count(), 100);
    kept
}

backend_test!(no_command_fails_under_contention, |env| {
    for _ in 0..3 {
        env.spawn_workers(&["--count", "3"]);
    }
    env.wait_live_workers(9, Duration::from_secs(30));
    burst(
        &env,
        &[
            &["status", "--json"],
            &["list", "--state", "completed", "--json"],
            &["worker", "list", "--json"],
        ],
        || (),
    );
});

/// Stops a worker started by hand when the test ends, even when it fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// With no worker running, a short command may hold the SQLite store alone for its few
// milliseconds; the commands beside it, and a worker starting in the middle of the
// burst, must wait their turn and never fail.
backend_test!(
    idle_store_commands_and_a_starting_worker_wait_their_turn,
    |env| {
        env.ensure_store();
        let env_ref: &Env = &env;
        burst(
            env_ref,
            &[&["status", "--json"], &["list", "--json"]],
            || {
                wait_until("20 jobs enqueued", Duration::from_secs(60), || {
                    env_ref.status()["pending"].as_i64().unwrap_or(0) >= 20
                });
                let child = env_ref
                    .cmd(&["worker", "start"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a worker");
                KillOnDrop(child)
            },
        );
    }
);
