use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use crate::common::wait_until;

backend_test!(a_job_runs_to_completion, |env| {
    let id = env.enqueue("echo hello");
    assert_eq!(env.state(&id), "pending");
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(&id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 1);
    assert!(
        job["output_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("hello")
    );
    wait_until("nothing left", Duration::from_secs(5), || {
        env.json(&["status"])["pending"] == 0
    });
});

// queuectl does its own process start-up (src/main.rs); these check the parts of
// Rust's usual start-up that it must keep.

backend_test!(output_into_a_closed_pipe_ends_quietly, |env| {
    let jobs: String = (0..400)
        .map(|i| format!("{{\"command\":\"echo {i}\"}}\n"))
        .collect();
    std::fs::write(env.file("jobs.jsonl"), jobs).expect("write jobs");
    env.ok(&["enqueue", "--file", "jobs.jsonl"]);
    // More than a pipe holds, to a reader that is gone: `queuectl list | head -1`.
    // `export` writes as it reads the store, so it stops reading there too.
    for args in [&["list", "--json"][..], &["export"]] {
        let mut command = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start queuectl");
        drop(command.stdout.take());
        let out = command.wait_with_output().expect("wait for queuectl");
        assert_eq!(
            out.status.code(),
            Some(0),
            "`queuectl {}` was killed by SIGPIPE or failed: {:?}, stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
});

backend_test!(
    a_command_with_its_standard_descriptors_closed_still_works,
    |env| {
        env.ensure_store();
        let mut enqueue = env.cmd(&["enqueue", "--id", "closed-fds", "--command", "true"]);
        // SAFETY: close is async-signal-safe, as required between fork and exec.
        unsafe {
            enqueue.pre_exec(|| {
                for fd in 0..3 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        // Without /dev/null in their place, the store's files would take descriptors
        // 0 to 2 and printing the result would fail (or write into them).
        let status = enqueue.status().expect("run enqueue");
        assert!(status.success(), "enqueue: {status:?}");
        assert_eq!(env.state("closed-fds"), "pending");
    }
);
