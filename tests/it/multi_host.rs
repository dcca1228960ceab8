//! Several machines on one PostgreSQL queue, simulated on one machine: each "host" is
//! a `worker start` process with its own `QUEUECTL_HOSTNAME` and `QUEUECTL_HOME`.
//! Recovery across hosts therefore goes through lease expiry, as it would between
//! real machines (a host cannot see another host's processes).
//!
//! Every test skips with a printed line when `QUEUECTL_TEST_POSTGRES_URL` is unset
//! (and fails when `CI` is set, see `common::postgres_url`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Backend, Env, parse_time, wait_until};

/// Lease settings for these tests: recovery after at most lease + one recovery pass.
pub(crate) const LEASE_SECS: u64 = 3;
/// The contract's worst case from a kill to the job being claimable is the lease
/// timeout plus 5 s (10 s -> 15 s with the defaults)...
pub(crate) const RECOVERY_BOUND: Duration = Duration::from_secs(LEASE_SECS + 5);
/// ...plus slack for a loaded 2-core machine (process start-up, scheduling).
pub(crate) const SLACK: Duration = Duration::from_secs(4);

pub(crate) fn pg_env() -> Option<Env> {
    Env::new(Backend::Postgres)
}

pub(crate) fn short_leases(env: &Env) {
    // The heartbeat first: it must stay at most half the lease.
    env.ok(&["config", "set", "heartbeat-interval", "1"]);
    env.ok(&["config", "set", "lease-timeout", &LEASE_SECS.to_string()]);
}

/// Starts a "host": `worker start --count N` with its own host name and home.
pub(crate) fn start_host(env: &mut Env, host: &str, count: u32) -> u32 {
    start_host_wrapped(env, &["env"], host, count)
}

pub(crate) fn start_host_wrapped(env: &mut Env, wrapper: &[&str], host: &str, count: u32) -> u32 {
    let home = env.path().join(format!("home-{host}"));
    let home = home.to_string_lossy().into_owned();
    env.spawn_workers_wrapped(
        wrapper,
        &["--count", &count.to_string()],
        &[
            ("QUEUECTL_HOSTNAME", host),
            ("QUEUECTL_HOME", &home),
            // For `faketime`: skew the wall clock only, as on a badly synced host.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
}

/// Live workers per host, from `worker list --json`.
pub(crate) fn live_hosts(env: &Env) -> BTreeMap<String, usize> {
    let mut hosts = BTreeMap::new();
    for w in env.json(&["worker", "list"]).as_array().unwrap() {
        *hosts
            .entry(w["host"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    hosts
}

pub(crate) fn wait_for_hosts(env: &Env, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(h, n)| (h.to_string(), *n)).collect();
    wait_until(
        &format!("workers registered on {want:?}"),
        Duration::from_secs(30),
        || live_hosts(env) == want,
    );
}

/// The host a worker id belongs to (ids are `HOST-PID-N`).
pub(crate) fn host_of(worker: &str) -> &str {
    let mut parts = worker.rsplitn(3, '-');
    parts.next();
    parts.next();
    parts.next().unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time printed by queuectl.
pub(crate) fn ms(value: &Value) -> i64 {
    parse_time(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
}

/// Each id in `file` once, and all of `ids`.
pub(crate) fn assert_ran_once(file: &Path, ids: &BTreeSet<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        *seen.entry(line.to_owned()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs ran more than once: {twice:?}");
    let ran: BTreeSet<String> = seen.into_keys().collect();
    assert_eq!(&ran, ids, "jobs that ran differ from those enqueued");
}

/// Writes a JSONL file of jobs `prefix0001..` that append their id to `ran.txt` after
/// `sleep` (shell syntax, may be empty); returns the ids.
pub(crate) fn enqueue_appenders(
    env: &Env,
    prefix: &str,
    count: usize,
    sleep: &str,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut text = String::new();
    for i in 0..count {
        let id = format!("{prefix}{i:04}");
        text.push_str(&format!(
            "{{\"id\":\"{id}\",\"command\":\"{sleep}echo {id} >> ran.txt\"}}\n"
        ));
        ids.insert(id);
    }
    let file = env.path().join(format!("{prefix}.jsonl"));
    std::fs::write(&file, text).expect("write jobs");
    env.ok(&["enqueue", "--file", &file.to_string_lossy()]);
    ids
}

pub(crate) fn completed(env: &Env) -> i64 {
    env.json(&["status"])["completed"].as_i64().unwrap_or(0)
}

#[test]
fn two_thousand_jobs_over_three_hosts_each_run_exactly_once() {
    let Some(mut env) = pg_env() else { return };
    let hosts = ["host-a", "host-b", "host-c"];
    for host in hosts {
        start_host(&mut env, host, 2);
    }
    wait_for_hosts(&env, &[("host-a", 2), ("host-b", 2), ("host-c", 2)]);
    let ids = enqueue_appenders(&env, "j", 2000, "");
    wait_until("2000 jobs completed", Duration::from_secs(240), || {
        completed(&env) == 2000
    });
    let status = env.json(&["status"]);
    assert_eq!(status["processing"], 0, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert_ran_once(&env.path().join("ran.txt"), &ids);
    // Every host took part, and every job took exactly one attempt.
    let mut per_host = BTreeMap::new();
    for line in env.ok(&["export"]).lines() {
        let job: Value = serde_json::from_str(line).unwrap();
        let history = job["attempts_history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "{job}");
        let worker = history[0]["worker"].as_str().unwrap();
        *per_host.entry(host_of(worker).to_owned()).or_insert(0) += 1;
    }
    assert_eq!(
        per_host.keys().map(String::as_str).collect::<Vec<_>>(),
        hosts,
        "jobs per host: {per_host:?}"
    );
    eprintln!("jobs per host: {per_host:?}");
}

#[test]
fn worker_stop_with_host_stops_only_that_host_and_list_shows_every_host() {
    let Some(mut env) = pg_env() else { return };
    let a = start_host(&mut env, "host-a", 1);
    let b = start_host(&mut env, "host-b", 2);
    let c = start_host(&mut env, "host-c", 1);
    wait_for_hosts(&env, &[("host-a", 1), ("host-b", 2), ("host-c", 1)]);
    let table = env.ok(&["worker", "list"]);
    for host in ["host-a", "host-b", "host-c"] {
        assert!(table.contains(host), "{table}");
    }
    env.ok(&["worker", "stop", "--host", "host-b"]);
    assert_eq!(env.wait_worker(b, Duration::from_secs(30)), Some(0));
    assert!(env.is_running(a) && env.is_running(c));
    assert_eq!(
        live_hosts(&env),
        BTreeMap::from([("host-a".to_owned(), 1), ("host-c".to_owned(), 1)])
    );
    // The others still work.
    let id = env.enqueue("echo still-here");
    wait_until("the job completed", Duration::from_secs(30), || {
        env.state(&id) == "completed"
    });
    env.ok(&["worker", "stop"]);
    assert_eq!(env.wait_worker(a, Duration::from_secs(30)), Some(0));
    assert_eq!(env.wait_worker(c, Duration::from_secs(30)), Some(0));
    let all = env.json(&["worker", "list", "--all"]);
    let states: BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, BTreeSet::from(["stopped"]), "{all}");
}

#[test]
fn a_host_killed_mid_job_has_its_jobs_finished_elsewhere_within_the_bound() {
    let Some(mut env) = pg_env() else { return };
    short_leases(&env);
    let victim = start_host(&mut env, "host-a", 2);
    wait_for_hosts(&env, &[("host-a", 2)]);
    // Each job sleeps on its first run only (a marker file says it ran before), so
    // the rerun elsewhere is quick, and appends its id when it gets to the end.
    let mut ids = BTreeSet::new();
    for id in ["k1", "k2"] {
        env.ok(&[
            "enqueue",
            "--id",
            id,
            "--command",
            &format!("if [ ! -e {id}.started ]; then touch {id}.started; sleep 60; fi; echo {id} >> ran.txt"),
        ]);
        ids.insert(id.to_owned());
    }
    wait_until("host-a runs both jobs", Duration::from_secs(30), || {
        ids.iter().all(|id| {
            let job = env.job(id);
            job["state"] == "processing" && host_of(job["worker"].as_str().unwrap()) == "host-a"
        })
    });
    start_host(&mut env, "host-b", 2);
    wait_for_hosts(&env, &[("host-a", 2), ("host-b", 2)]);
    env.signal(victim, libc::SIGKILL);
    let killed = Instant::now();
    let _ = env.wait_worker(victim, Duration::from_secs(10));
    wait_until("host-b picks the jobs up", RECOVERY_BOUND + SLACK, || {
        ids.iter().all(|id| {
            let job = env.job(id);
            job["state"] == "completed"
                || job["state"] == "processing"
                    && host_of(job["worker"].as_str().unwrap()) == "host-b"
        })
    });
    let recovered_after = killed.elapsed();
    wait_until("both jobs completed", Duration::from_secs(30), || {
        ids.iter().all(|id| env.state(id) == "completed")
    });
    eprintln!(
        "recovered {recovered_after:?} after the kill (bound {RECOVERY_BOUND:?} + {SLACK:?})"
    );
    for id in &ids {
        let job = env.job(id);
        assert_eq!(job["attempts"], 1, "{job}");
        assert_eq!(job["interruptions"], 1, "{job}");
        let history = job["history"].as_array().unwrap();
        let outcomes: Vec<&str> = history
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["interrupted", "succeeded"], "{job}");
        assert_eq!(host_of(history[1]["worker"].as_str().unwrap()), "host-b");
    }
    assert_eq!(env.json(&["status"])["processing"], 0);
    assert_ran_once(&env.path().join("ran.txt"), &ids);
    // host-a's workers are no longer live anywhere.
    assert_eq!(live_hosts(&env), BTreeMap::from([("host-b".to_owned(), 2)]));
}
