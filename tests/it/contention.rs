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
