//! Many processes on one store at once: no command may fail because another one holds
//! the store (no `database is locked` may ever reach the user).

use std::time::Duration;

use crate::common::{Env, wait_until};

backend_test!(no_command_fails_under_contention, |env| {
    for _ in 0..3 {
        env.spawn_workers(&["--count", "3"]);
    }
    env.wait_live_workers(9, Duration::from_secs(30));
    let failures = std::sync::Mutex::new(Vec::new());
    let env_ref: &Env = &env;
    std::thread::scope(|scope| {
        for t in 0..4 {
            let failures = &failures;
            scope.spawn(move || {
                for i in 0..25 {
                    let commands: [Vec<String>; 4] = [
                        vec![
                            "enqueue".into(),
                            "--command".into(),
                            format!("echo {t}-{i} >> ran.txt"),
                        ],
                        vec!["status".into(), "--json".into()],
                        vec![
                            "list".into(),
                            "--state".into(),
                            "completed".into(),
                            "--json".into(),
                        ],
                        vec!["worker".into(), "list".into(), "--json".into()],
                    ];
                    for args in &commands {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        let out = env_ref.run(&args);
                        if !out.status.success() {
                            failures.lock().unwrap().push(format!(
                                "`queuectl {}`: {}",
                                args.join(" "),
                                String::from_utf8_lossy(&out.stderr).trim()
                            ));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} command(s) failed under contention:\n{}",
        failures.len(),
        failures.join("\n")
    );
    wait_until("100 completed jobs", Duration::from_secs(120), || {
        env.status()["completed"] == 100
    });
    assert_eq!(env.read("ran.txt").lines().count(), 100);
});

/// Stops a worker started by hand when the test ends, even when it fails.
struct KillOnDrop(std::process::Child);

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
        let failures = std::sync::Mutex::new(Vec::new());
        let env_ref: &Env = &env;
        let worker = std::thread::scope(|scope| {
            for t in 0..4 {
                let failures = &failures;
                scope.spawn(move || {
                    for i in 0..25 {
                        let enqueue = format!("echo {t}-{i} >> ran.txt");
                        for args in [
                            vec!["enqueue", "--command", enqueue.as_str()],
                            vec!["status", "--json"],
                            vec!["list", "--json"],
                        ] {
                            let out = env_ref.run(&args);
                            if !out.status.success() {
                                failures.lock().unwrap().push(format!(
                                    "`queuectl {}`: {}",
                                    args.join(" "),
                                    String::from_utf8_lossy(&out.stderr).trim()
                                ));
                            }
                        }
                    }
                });
            }
            wait_until("20 jobs enqueued", Duration::from_secs(60), || {
                env_ref.status()["pending"].as_i64().unwrap_or(0) >= 20
            });
            let child = env_ref
                .cmd(&["worker", "start"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start a worker");
            KillOnDrop(child)
        });
        let failures = failures.into_inner().unwrap();
        assert!(
            failures.is_empty(),
            "{} command(s) failed on an idle store:\n{}",
            failures.len(),
            failures.join("\n")
        );
        wait_until("100 completed jobs", Duration::from_secs(120), || {
            env.status()["completed"] == 100
        });
        assert_eq!(env.read("ran.txt").lines().count(), 100);
        drop(worker);
    }
);
