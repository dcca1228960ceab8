//! Several machines on one PostgreSQL queue, simulated on one machine: each "host" is
//! a `worker start` process with its own `QUEUECTL_HOSTNAME` and `QUEUECTL_HOME`.
//! Recovery across hosts therefore goes through lease expiry, as it would between
//! real machines (a host cannot see another host's processes).
//!
//! Every test skips with a printed line when `QUEUECTL_TEST_POSTGRES_URL` is unset
//! (and fails when `CI` is set, see `common::postgres_url`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Backend, Env, parse_time, postgres_url, wait_until};

/// Lease settings for these tests: recovery after at most lease + one recovery pass.
const LEASE_SECS: u64 = 3;
/// The contract's worst case from a kill to the job being claimable is the lease
/// timeout plus 5 s (10 s -> 15 s with the defaults)...
const RECOVERY_BOUND: Duration = Duration::from_secs(LEASE_SECS + 5);
/// ...plus slack for a loaded 2-core machine (process start-up, scheduling).
const SLACK: Duration = Duration::from_secs(4);

fn pg_env() -> Option<Env> {
    Env::new(Backend::Postgres)
}

fn short_leases(env: &Env) {
    // The heartbeat first: it must stay at most half the lease.
    env.ok(&["config", "set", "heartbeat-interval", "1"]);
    env.ok(&["config", "set", "lease-timeout", &LEASE_SECS.to_string()]);
}

/// Starts a "host": `worker start --count N` with its own host name and home.
fn start_host(env: &mut Env, host: &str, count: u32) -> u32 {
    start_host_wrapped(env, &["env"], host, count)
}

fn start_host_wrapped(env: &mut Env, wrapper: &[&str], host: &str, count: u32) -> u32 {
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
fn live_hosts(env: &Env) -> BTreeMap<String, usize> {
    let mut hosts = BTreeMap::new();
    for w in env.json(&["worker", "list"]).as_array().unwrap() {
        *hosts
            .entry(w["host"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    hosts
}

fn wait_for_hosts(env: &Env, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(h, n)| (h.to_string(), *n)).collect();
    wait_until(
        &format!("workers registered on {want:?}"),
        Duration::from_secs(30),
        || live_hosts(env) == want,
    );
}

/// The host a worker id belongs to (ids are `HOST-PID-N`).
fn host_of(worker: &str) -> &str {
    let mut parts = worker.rsplitn(3, '-');
    parts.next();
    parts.next();
    parts.next().unwrap_or_default()
}

/// Milliseconds since the epoch of an RFC 3339 time printed by queuectl.
fn ms(value: &Value) -> i64 {
    parse_time(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
}

/// Each id in `file` once, and all of `ids`.
fn assert_ran_once(file: &Path, ids: &BTreeSet<String>) {
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
fn enqueue_appenders(env: &Env, prefix: &str, count: usize, sleep: &str) -> BTreeSet<String> {
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

fn completed(env: &Env) -> i64 {
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

/// A PostgreSQL server of the test's own: `initdb` in a temporary directory, `pg_ctl`
/// on a free port. Stopped and removed on drop, even when the test fails. As root
/// (CI) it runs as the `postgres` OS user, since PostgreSQL refuses to run as root.
struct PrivateServer {
    dir: TempDir,
    port: u16,
    as_postgres: bool,
}

impl PrivateServer {
    fn start() -> PrivateServer {
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer {
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", &server.dir.path().to_string_lossy()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the server directory to postgres");
        }
        server.pg(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.ctl(&["start", "-w", "-t", "60"]);
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a PostgreSQL program, as the `postgres` user when we are root.
    fn pg(&self, program: &str, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--", program]);
            cmd
        } else {
            Command::new(program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.data().to_string_lossy().into_owned();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut all = vec!["-D", &data, "-l"];
        let log = log.to_string_lossy().into_owned();
        all.push(&log);
        all.extend(["-o", &options]);
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--", "pg_ctl"]);
            cmd
        } else {
            Command::new("pg_ctl")
        };
        let _ = cmd
            .args(["-D", &data, "stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The TempDir removes the data directory after this.
    }
}

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
