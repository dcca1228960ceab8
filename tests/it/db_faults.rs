//! PostgreSQL faults seen from several hosts: the database server restarting under
//! running workers, a database not up yet when workers start, and hosts whose clocks
//! are minutes apart. Builds on the simulated
//! hosts of [`super::multi_host`]; skips (or fails under `CI`) like those tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Backend, CommitCutter, Env, PrivateServer, postgres_url, wait_until};
use crate::multi_host::*;

#[test]
fn a_database_restart_mid_run_loses_no_job_and_runs_none_twice() {
    if postgres_url().is_none() {
        return;
    }
    let server = PrivateServer::start();
    let mut env = pg_env().expect("PostgreSQL configured");
    env.db = format!("{}?schema=restart_test", server.url());
    let a = start_host(&mut env, "host-a", 2);
    let b = start_host(&mut env, "host-b", 2);
    wait_for_hosts(&env, &[("host-a", 2), ("host-b", 2)]);
    let ids = enqueue_appenders(&env, "r", 300, "sleep 0.02; ");
    wait_until("some jobs done", Duration::from_secs(60), || {
        completed(&env) >= 40
    });
    // Crash the server (no clean shutdown), keep it down for a moment, start it again.
    server.ctl(&["stop", "-m", "immediate", "-w"]);
    let down = env.run(&["status"]);
    assert_eq!(down.status.code(), Some(1), "the server is down");
    std::thread::sleep(Duration::from_secs(2));
    server.ctl(&["start", "-w", "-t", "60"]);
    wait_until("all 300 jobs completed", Duration::from_secs(180), || {
        env.run(&["status", "--json"]).status.success() && completed(&env) == 300
    });
    assert!(env.is_running(a) && env.is_running(b), "workers exited");
    let status = env.json(&["status"]);
    assert_eq!(status["processing"], 0, "{status}");
    assert_eq!(status["dead"], 0, "{status}");
    assert_ran_once(&env.path().join("ran.txt"), &ids);
    wait_for_hosts(&env, &[("host-a", 2), ("host-b", 2)]);
}

/// Workers started before their database (at boot, or while it restarts) wait for
/// it with backoff instead of exiting, then run what was queued meanwhile.
#[test]
fn a_worker_started_before_its_database_waits_for_it() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    env.ensure_store();
    let database = CommitCutter::start_closed(&env.db);
    let routed = database.route(&env.db);
    let pid = env.spawn_workers_with(&["--count", "1"], &[("QUEUECTL_DB", &routed)]);
    wait_until(
        "the worker's second try at the database",
        Duration::from_secs(20),
        || database.attempts() >= 2,
    );
    assert!(env.is_running(pid), "the worker exited instead of waiting");
    let id = env.enqueue("echo queued while the workers waited");
    database.open();
    env.wait_state(&id, "completed", Duration::from_secs(30));
    let log = env.read("worker-1.log");
    assert!(
        log.contains("waiting for it") && log.contains("store reachable"),
        "the log says neither that it waited nor that it went on:\n{log}"
    );
    env.signal(pid, libc::SIGTERM);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
}

/// A server that answers "no" (an unknown role, a database that does not exist) is
/// not waited for: the start fails at once, in one line, with the fix.
#[test]
fn a_worker_refused_by_the_database_says_so_and_exits_2() {
    let Some(env) = Env::new(Backend::Postgres) else {
        return;
    };
    // postgres://[user@]host:port/database?query
    let (scheme, rest) = env.db.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let user = authority
        .rsplit_once('@')
        .map_or("postgres", |(user, _)| user);
    let query = path.split_once('?').map_or("", |(_, query)| query);
    for (url, needle) in [
        (
            format!(
                "{scheme}://queuectl_no_such_role@{rest}",
                rest = format_args!("{host}/{path}")
            ),
            "queuectl_no_such_role",
        ),
        (
            format!("{scheme}://{user}@{host}/queuectl_no_such_database?{query}"),
            "queuectl_no_such_database",
        ),
    ] {
        let start = Instant::now();
        let out = env
            .cmd(&["worker", "start", "--burst"])
            .env("QUEUECTL_DB", &url)
            .output()
            .expect("run queuectl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("fix the user, password or database"),
            "{url}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(start.elapsed() < Duration::from_secs(10), "it waited");
    }
}

/// libfaketime (Debian package `faketime`), or `None` when it is missing and CI is
/// unset (then the test says it was skipped); CI must have it. The library is
/// preloaded through `env` rather than the `faketime` script, which would run
/// queuectl as its child: the test must be able to SIGKILL the worker itself, and
/// must leave no worker behind when it drops its children.
fn libfaketime() -> Option<String> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|dir| format!("{dir}/faketime/libfaketime.so.1"))
    .find(|path| Path::new(path).exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but libfaketime is missing: install the Debian package faketime"
        );
        eprintln!(
            "skipped: faketime is not installed (apt-get install faketime), clock skew test not run"
        );
    }
    found
}

#[test]
fn hosts_with_clocks_minutes_apart_agree_on_backoff_and_leases() {
    let Some(mut env) = pg_env() else { return };
    let Some(lib) = libfaketime() else { return };
    short_leases(&env);
    env.ok(&["config", "set", "backoff-base", "2"]);
    let preload = format!("LD_PRELOAD={lib}");
    let ahead = ["env", &preload, "FAKETIME=+10m"];
    let behind = ["env", &preload, "FAKETIME=-10m"];
    // The skew is real: a process started this way reads a clock 10 minutes ahead.
    let out = Command::new("env")
        .args([preload.as_str(), "FAKETIME=+10m", "date", "+%s"])
        .output()
        .expect("run date under libfaketime");
    let skewed: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a time");
    let real = jiff::Timestamp::now().as_second();
    assert!(
        (590..610).contains(&(skewed - real)),
        "skew {}",
        skewed - real
    );

    // Backoff, on a host 10 minutes ahead: retries come after 2 s and 4 s of the
    // database's time, not 10 minutes late.
    let fast = start_host_wrapped(&mut env, &ahead, "ahead", 1);
    wait_for_hosts(&env, &[("ahead", 1)]);
    env.ok(&[
        "enqueue",
        "--id",
        "flaky",
        "--max-retries",
        "2",
        "--command",
        "exit 1",
    ]);
    wait_until("flaky is dead", Duration::from_secs(60), || {
        env.state("flaky") == "dead"
    });
    let history = env.job("flaky")["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 3);
    for (i, expected) in [(1, 2000), (2, 4000)] {
        let gap = ms(&history[i]["started_at"]) - ms(&history[i - 1]["finished_at"]);
        assert!(
            (expected..expected + 5000).contains(&gap),
            "retry {i} came {gap} ms after the failure, expected {expected} ms of backoff: {history:?}"
        );
    }
    env.ok(&["worker", "stop", "--host", "ahead"]);
    assert_eq!(env.wait_worker(fast, Duration::from_secs(30)), Some(0));

    // Backoff on a host 10 minutes behind: not early either.
    let slow = start_host_wrapped(&mut env, &behind, "behind", 2);
    wait_for_hosts(&env, &[("behind", 2)]);
    env.ok(&["dlq", "retry", "flaky"]);
    wait_until("flaky is dead again", Duration::from_secs(60), || {
        env.state("flaky") == "dead"
    });
    let history = env.job("flaky")["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 6);
    for (i, expected) in [(4, 2000), (5, 4000)] {
        let gap = ms(&history[i]["started_at"]) - ms(&history[i - 1]["finished_at"]);
        assert!(
            (expected..expected + 5000).contains(&gap),
            "retry came {gap} ms after the failure, expected {expected} ms: {history:?}"
        );
    }

    // Leases: the host behind runs two jobs; a host 10 minutes ahead must not think
    // their leases expired while they are renewed...
    for (id, secs) in [("steady", 5), ("orphan", 60)] {
        env.ok(&[
            "enqueue",
            "--id",
            id,
            "--command",
            &format!("if [ ! -e {id}.started ]; then touch {id}.started; sleep {secs}; fi; echo {id} >> ran.txt"),
        ]);
    }
    wait_until("the host behind runs both", Duration::from_secs(30), || {
        ["steady", "orphan"].iter().all(|id| {
            let job = env.job(id);
            job["state"] == "processing" && host_of(job["worker"].as_str().unwrap()) == "behind"
        })
    });
    start_host_wrapped(&mut env, &ahead, "ahead", 1);
    wait_for_hosts(&env, &[("ahead", 1), ("behind", 2)]);
    wait_until("steady completed", Duration::from_secs(30), || {
        env.state("steady") == "completed"
    });
    let steady = env.job("steady");
    assert_eq!(
        steady["interruptions"], 0,
        "a live lease was stolen: {steady}"
    );
    assert_eq!(steady["history"].as_array().unwrap().len(), 1, "{steady}");
    // ...and when the host behind dies, its job is recovered within the bound.
    env.signal(slow, libc::SIGKILL);
    let killed = Instant::now();
    wait_until(
        "the host ahead takes the orphan over",
        RECOVERY_BOUND + SLACK,
        || {
            let job = env.job("orphan");
            job["state"] == "completed"
                || job["state"] == "processing"
                    && host_of(job["worker"].as_str().unwrap()) == "ahead"
        },
    );
    eprintln!("orphan recovered {:?} after the kill", killed.elapsed());
    wait_until("orphan completed", Duration::from_secs(30), || {
        env.state("orphan") == "completed"
    });
    let orphan = env.job("orphan");
    assert_eq!(orphan["interruptions"], 1, "{orphan}");
    assert_ran_once(
        &env.path().join("ran.txt"),
        &BTreeSet::from(["steady".to_owned(), "orphan".to_owned()]),
    );
}
