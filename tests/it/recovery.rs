//! Crash recovery: a worker process killed with SIGKILL must not leave its jobs in
//! `processing`. On the same host a live worker (or `status`) sees the process is gone
//! and recovers at once; from another host only the lease expiry tells. Interruptions
//! do not use attempts, the interrupted attempt's processes are killed before the job
//! runs again, a worker that lost its lease cannot overwrite the newer result, and a
//! job that keeps killing its worker ends up dead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{Env, process_group_alive, wait_until};

/// A job that, on its first run, records its process group and hangs for a minute;
/// on any later run it appends `tag` to done.txt and succeeds.
fn long_job(tag: &str) -> String {
    format!(
        "if [ -e started-{tag} ]; then echo {tag} >> done.txt; \
         else touch started-{tag}; echo $$ > pgid-{tag}; sleep 60; echo {tag}-first-run >> done.txt; fi"
    )
}

/// Enqueues [`long_job`] with id `tag` and waits until its first run is under way.
fn start_long_job(env: &Env, tag: &str) -> i64 {
    env.ok(&["enqueue", "--id", tag, "--command", &long_job(tag)]);
    let pgid = format!("pgid-{tag}");
    env.wait_state(tag, "processing", Duration::from_secs(20));
    wait_until("the job to record its pid", Duration::from_secs(10), || {
        !env.read(&pgid).trim().is_empty()
    });
    env.read(&pgid).trim().parse().unwrap()
}

/// How many times each tag appears in done.txt.
fn done_counts(env: &Env) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in env.read("done.txt").lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

/// Waits until `id` has been recovered (its interruption is counted); returns how long
/// that took from `since`.
fn wait_recovered(env: &Env, id: &str, since: Instant, timeout: Duration) -> Duration {
    wait_until(&format!("job {id} to be recovered"), timeout, || {
        env.job(id)["interruptions"].as_i64() >= Some(1)
    });
    since.elapsed()
}

backend_test!(
    sigkilled_worker_is_recovered_fast_by_a_live_worker_on_the_same_host,
    |env| {
        let victim = env.spawn_workers(&["--count", "2"]);
        env.wait_live_workers(2, Duration::from_secs(20));
        let pgid_a = start_long_job(&env, "longa");
        let pgid_b = start_long_job(&env, "longb");
        let victim_workers: Vec<String> = env
            .workers(false)
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        // A second worker process on the same host, and some short jobs for it.
        let survivor = env.spawn_workers(&["--count", "2"]);
        env.wait_live_workers(4, Duration::from_secs(20));
        let short: Vec<String> = (0..4).map(|i| format!("short{i}")).collect();
        for tag in &short {
            env.ok(&[
                "enqueue",
                "--id",
                tag,
                "--command",
                &format!("echo {tag} >> done.txt"),
            ]);
        }

        env.signal(victim, libc::SIGKILL);
        let killed = Instant::now();
        let took_a = wait_recovered(&env, "longa", killed, Duration::from_secs(30));
        let took_b = wait_recovered(&env, "longb", killed, Duration::from_secs(30));
        eprintln!("recovered after {took_a:?} and {took_b:?}");
        assert!(
            took_a.max(took_b) < Duration::from_secs(5),
            "same-host recovery took {took_a:?}/{took_b:?} (contract: <= 2 s)"
        );

        // Everything completes, each job once, nothing stays processing.
        for tag in ["longa", "longb"]
            .iter()
            .map(|s| s.to_string())
            .chain(short.clone())
        {
            let job = env.wait_state(&tag, "completed", Duration::from_secs(30));
            assert_eq!(
                job["attempts"], 1,
                "an interruption does not use an attempt: {job}"
            );
        }
        let status = env.status();
        assert_eq!(status["processing"], 0, "{status}");
        assert_eq!(status["completed"], 6, "{status}");
        let counts = done_counts(&env);
        assert_eq!(counts.len(), 6, "{counts:?}");
        assert!(counts.values().all(|n| *n == 1), "{counts:?}");
        // The interrupted attempts' processes (the orphaned `sleep 60`) were killed.
        assert!(
            !process_group_alive(pgid_a),
            "the first run of longa is still running"
        );
        assert!(
            !process_group_alive(pgid_b),
            "the first run of longb is still running"
        );
        // The dead process's workers are no longer live; with --all they are `lost`.
        let live: Vec<String> = env
            .workers(false)
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        for id in &victim_workers {
            assert!(
                !live.contains(id),
                "killed worker {id} still listed as live"
            );
        }
        for w in env.workers(true) {
            if victim_workers.iter().any(|id| w["id"] == id.as_str()) {
                assert_eq!(w["state"], "lost", "{w}");
            }
        }
        assert_eq!(env.status()["workers"]["live"], 2);
        let _ = survivor;
    }
);

backend_test!(
    status_recovers_a_sigkilled_workers_job_when_no_worker_runs,
    |env| {
        let victim = env.spawn_workers(&[]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let pgid = start_long_job(&env, "lonely");
        env.signal(victim, libc::SIGKILL);
        let killed = Instant::now();
        // Each `status` is a recovery pass.
        wait_until("status to recover the job", Duration::from_secs(30), || {
            env.status()["processing"] == 0
        });
        let took = killed.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "status recovered after {took:?} (contract: <= 2 s)"
        );
        let job = env.job("lonely");
        assert_eq!(job["state"], "pending", "{job}");
        assert_eq!(job["attempts"], 0);
        assert_eq!(job["interruptions"], 1);
        assert!(
            !process_group_alive(pgid),
            "the interrupted run is still running"
        );
        let pid = env.spawn_workers(&["--burst"]);
        assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
        assert_eq!(env.state("lonely"), "completed");
        assert_eq!(done_counts(&env).get("lonely"), Some(&1));
    }
);

/// A worker "on another host" (same machine, `QUEUECTL_HOSTNAME=otherhost`) is killed:
/// the live worker cannot check its pid and must wait for the lease to expire.
fn lease_expiry(env: &mut Env, limit: Duration) -> Duration {
    let victim = env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "otherhost")]);
    env.wait_live_workers(1, Duration::from_secs(20));
    let pgid = start_long_job(env, "remote");
    assert_eq!(env.workers(false)[0]["host"], "otherhost");
    env.spawn_workers(&[]);
    env.wait_live_workers(2, Duration::from_secs(20));
    env.signal(victim, libc::SIGKILL);
    let killed = Instant::now();
    let took = wait_recovered(env, "remote", killed, limit + Duration::from_secs(30));
    eprintln!("lease-expiry recovery took {took:?}");
    assert!(
        took < limit,
        "lease-expiry recovery took {took:?}, limit {limit:?}"
    );
    // The dead worker, whose heartbeat is stale, is no longer counted live.
    wait_until(
        "the remote worker to stop counting as live",
        Duration::from_secs(30),
        || env.status()["workers"]["live"] == 1,
    );
    let job = env.wait_state("remote", "completed", Duration::from_secs(30));
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["interruptions"], 1);
    assert_eq!(env.status()["processing"], 0);
    // The first run's `sleep` was on "another host", where recovery cannot reach it:
    // the dead worker's attempt guard killed it.
    assert!(
        !process_group_alive(pgid),
        "the first run outlived its worker"
    );
    took
}

backend_test!(
    lease_expiry_recovers_a_remote_workers_job_within_15s_by_default,
    |env| {
        // Contract: at most 15 s with default settings; 5 s slack for a loaded machine.
        lease_expiry(&mut env, Duration::from_secs(20));
    }
);

backend_test!(lease_expiry_follows_a_shorter_lease_timeout, |env| {
    env.ok(&["config", "set", "heartbeat-interval", "1"]);
    env.ok(&["config", "set", "lease-timeout", "3"]);
    // Lease 3 s plus a recovery pass, with slack.
    lease_expiry(&mut env, Duration::from_secs(8));
});

backend_test!(
    a_worker_that_lost_its_lease_cannot_overwrite_the_newer_result,
    |env| {
        env.ok(&["config", "set", "heartbeat-interval", "0.5"]);
        env.ok(&["config", "set", "lease-timeout", "2"]);
        // First run: fails after 4 s. Second run: succeeds at once.
        let command = "if [ -e first ]; then echo second >> log.txt; \
                   else touch first; sleep 4; echo first >> log.txt; exit 3; fi";
        let frozen = env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "otherhost")]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let id = env.enqueue(command);
        env.wait_state(&id, "processing", Duration::from_secs(20));
        // `processing` is set at claim, before the shell starts: freezing the worker
        // before its shell ran would leave the first run to the second worker.
        wait_until("the first run to start", Duration::from_secs(20), || {
            env.file("first").exists()
        });
        // Freeze the worker (its job keeps running): it stops heartbeating.
        env.signal(frozen, libc::SIGSTOP);
        env.spawn_workers(&[]);
        let job = env.wait_state(&id, "completed", Duration::from_secs(30));
        assert_eq!(job["attempts"], 1);
        // Let the first run finish (exit 3) and wake the old worker, which reports it.
        wait_until("the first run to finish", Duration::from_secs(20), || {
            env.read("log.txt").contains("first")
        });
        env.signal(frozen, libc::SIGCONT);
        // Wait until the old worker has noticed: it logs that its lease was taken over
        // (whether it tried to record its result or renewed first).
        wait_until(
            "the old worker to notice it lost the lease",
            Duration::from_secs(20),
            || {
                env.read("worker-1.log")
                    .lines()
                    .any(|l| l.contains(&id) && l.contains("lease"))
            },
        );
        let job = env.job(&id);
        assert_eq!(
            job["state"], "completed",
            "a stale worker overwrote the result: {job}"
        );
        assert_eq!(job["attempts"], 1, "{job}");
        assert_eq!(job["exit_code"], 0, "{job}");
    }
);

backend_test!(a_job_that_keeps_killing_its_worker_goes_dead, |env| {
    // The shell's parent is the worker process: the job SIGKILLs it, every time.
    let id = env.enqueue("echo run >> runs.txt; kill -9 $PPID; sleep 5");
    for round in 0..8 {
        if env.state(&id) == "dead" {
            break;
        }
        let pid = env.spawn_workers(&[]);
        let code = env.wait_worker(pid, Duration::from_secs(30));
        assert_eq!(
            code, None,
            "round {round}: the worker should have been killed"
        );
        // The next worker (or this status) recovers the job.
        wait_until("recovery", Duration::from_secs(10), || {
            env.status()["processing"] == 0
        });
    }
    let job = env.job(&id);
    assert_eq!(job["state"], "dead", "{job}");
    assert_eq!(job["interruptions"], 5, "{job}");
    assert_eq!(job["attempts"], 0, "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{job}"
    );
    assert_eq!(env.read("runs.txt").lines().count(), 5);
});

// A `--burst` worker that starts beside a SIGKILLed worker's job recovers it in its
// first round, after its claim came up empty: it must claim again and run the job
// before it may end, not exit and leave the job pending (a chaos-suite finding).
backend_test!(
    a_burst_worker_runs_the_job_it_recovered_before_it_ends,
    |env| {
        let victim = env.spawn_workers(&[]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let pgid = start_long_job(&env, "orphan");
        env.signal(victim, libc::SIGKILL);
        env.wait_worker(victim, Duration::from_secs(20));
        wait_until(
            "the killed attempt to be gone",
            Duration::from_secs(20),
            || !process_group_alive(pgid),
        );
        let out = env.run(&["worker", "start", "--burst"]);
        assert!(out.status.success(), "{out:?}");
        let job = env.json(&["show", "orphan"]);
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(done_counts(&env).get("orphan"), Some(&1), "{job}");
    }
);
