//! What workers do on their own to keep jobs in bounds: a job past its timeout is
//! killed with everything it started, and a job printing far more than
//! `output-limit` keeps its head and tail in the store without filling the disk.

use std::path::Path;
use std::time::Duration;

use crate::common::{process_alive, wait_until};

/// The pid a job wrote into `name` in the test directory, once it is there.
fn pid_in(env: &crate::common::Env, name: &str) -> i64 {
    let mut pid = None;
    wait_until(
        &format!("the job to write {name}"),
        Duration::from_secs(20),
        || {
            pid = env.read(name).trim().parse().ok();
            pid.is_some()
        },
    );
    pid.unwrap_or_default()
}

backend_test!(
    a_timed_out_job_is_killed_with_its_background_child_even_if_it_ignores_sigterm,
    |env| {
        env.ok(&["config", "set", "kill-grace", "1s"]);
        let command = "trap '' TERM; sleep 300 & echo $! > grandchild.pid; \
                       echo $$ > shell.pid; sleep 300; echo survived";
        let out = env.ok(&[
            "enqueue",
            "--timeout",
            "1s",
            "--max-retries",
            "0",
            "--command",
            command,
        ]);
        let id = out.trim().trim_start_matches("Enqueued: ").to_owned();
        env.spawn_workers(&[]);
        let shell = pid_in(&env, "shell.pid");
        let grandchild = pid_in(&env, "grandchild.pid");
        // Timeout 1s + kill-grace 1s, plus the 2s the issue allows.
        wait_until(
            "every process of the attempt to be gone",
            Duration::from_secs(4),
            || !process_alive(shell) && !process_alive(grandchild),
        );
        let job = env.wait_state(&id, "dead", Duration::from_secs(10));
        let error = job["last_error"].as_str().unwrap_or_default();
        assert_eq!(error, "timed out after 1s", "{job}");
        assert_eq!(job["history"][0]["outcome"], "timed_out", "{job}");
        assert_eq!(
            job["history"].as_array().map(Vec::len),
            Some(1),
            "not run again"
        );
    }
);

/// Bytes the files of a SQLite store take on disk (the database and its WAL).
fn store_bytes(db: &str) -> u64 {
    let on_disk = |path: String| {
        std::fs::metadata(path).map_or(0, |m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        })
    };
    on_disk(db.to_owned()) + on_disk(format!("{db}-wal"))
}

/// Bytes in the spool's working files for running attempts, under `home`.
fn spool_bytes(home: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![home.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.parent().and_then(Path::file_name) == Some("out".as_ref()) {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

backend_test!(
    a_job_printing_50_mib_keeps_head_marker_and_tail_in_about_the_limit,
    |env| {
        env.ensure_store();
        let before = store_bytes(&env.db);
        // 50 MiB over a few seconds, so the worker ships and trims while it runs.
        let command = "echo first; i=0; while [ $i -lt 50 ]; do \
                   head -c 1048576 /dev/zero | tr '\\0' x; i=$((i+1)); sleep 0.05; done; \
                   echo; echo last";
        let id = env.enqueue(command);
        env.spawn_workers(&[]);
        env.wait_state(&id, "completed", Duration::from_secs(60));
        let logs = env.ok(&["logs", &id]);
        assert!(logs.starts_with("first\nxxxx"), "head kept: {:.80}", logs);
        let omitted = 6 + 50 * 1_048_576 + 6 - (1 << 20);
        assert!(
            logs.contains(&format!("[... {omitted} bytes omitted ...]")),
            "one omission line for the middle"
        );
        assert!(logs.ends_with("xxxx\nlast\n"), "tail kept");
        assert!(
            logs.len() < (1 << 20) + 100,
            "about output-limit kept: {}",
            logs.len()
        );
        assert_eq!(
            spool_bytes(&env.path().join("home")),
            0,
            "the spool is emptied"
        );
        if env.backend == crate::common::Backend::Sqlite {
            let grown = store_bytes(&env.db).saturating_sub(before);
            assert!(
                grown < 8 << 20,
                "the store grew by {grown} bytes for 50 MiB printed with a 1 MiB limit"
            );
        }
    }
);
