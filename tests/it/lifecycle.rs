//! A worker's life around the person who started it (issue #12): SIGHUP (a closed
//! terminal) stops it gracefully like SIGTERM, `worker start --detach` keeps it
//! running after logout, the systemd unit's command line works, log lines carry the
//! date and zone once per start with human durations, and a worker's log ends each
//! job before it starts the next. Its JSON events are in `json_events.rs`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Backend, Env, assert_error, bin, process_alive, wait_until};

/// The stderr log of the `n`th process the Env spawned (1-based).
fn worker_log(env: &Env, n: usize) -> String {
    env.read(&format!("worker-{n}.log"))
}

/// Starts one worker and a job that records each run in `runs.txt` and sleeps
/// `secs`; returns (pid, job id) once the job runs.
fn running_job(env: &mut Env, args: &[&str], secs: u32) -> (u32, String) {
    let pid = env.spawn_workers(args);
    env.wait_live_workers(1, Duration::from_secs(20));
    let id = env.enqueue(&format!(
        "echo run >> runs.txt; sleep {secs}; echo finished >> done.txt"
    ));
    env.wait_state(&id, "processing", Duration::from_secs(10));
    wait_until("the job to start", Duration::from_secs(10), || {
        env.read("runs.txt").lines().count() >= 1
    });
    (pid, id)
}

/// Sends `signal` to a worker (the Env's `log_number`th process) running a job;
/// returns its exit code, its log and the job once it is finished.
fn stop_with(
    env: &mut Env,
    signal: libc::c_int,
    log_number: usize,
) -> (Option<i32>, String, Value) {
    let (pid, id) = running_job(env, &[], 2);
    env.signal(pid, signal);
    let code = env.wait_worker(pid, Duration::from_secs(30));
    (code, worker_log(env, log_number), env.job(&id))
}

/// A detached worker: SIGKILLed when the test ends, whatever happened.
struct Detached(i64);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0)
            && process_alive(self.0)
        {
            // SAFETY: kill takes plain integers; the pid is the worker this test
            // started and checked alive just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

backend_test!(sighup_stops_the_worker_gracefully_like_sigterm, |env| {
    let (hup_code, hup_log, hup_job) = stop_with(&mut env, libc::SIGHUP, 1);
    assert!(
        hup_log.contains("SIGHUP received: finishing running jobs"),
        "the stop is logged, naming the signal: {hup_log}"
    );
    // The job was not thrown away: it ran once, to its end, with one attempt.
    assert_eq!(hup_job["state"], "completed", "{hup_job}");
    assert_eq!(hup_job["attempts"], 1);
    assert_eq!(hup_job["interruptions"], 0);
    assert_eq!(hup_job["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(env.read("runs.txt"), "run\n", "the job started only once");
    assert_eq!(env.read("done.txt"), "finished\n");
    assert!(env.workers(true).iter().all(|w| w["state"] == "stopped"));

    // The same with SIGTERM, for comparison: same exit code, same outcome.
    std::fs::remove_file(env.file("runs.txt")).expect("remove runs.txt");
    let (term_code, term_log, term_job) = stop_with(&mut env, libc::SIGTERM, 2);
    assert!(term_log.contains("SIGTERM received"), "{term_log}");
    assert_eq!(hup_code, Some(0));
    assert_eq!(hup_code, term_code, "SIGHUP exits like SIGTERM");
    assert_eq!(term_job["state"], hup_job["state"]);
    assert_eq!(term_job["attempts"], hup_job["attempts"]);
});

backend_test!(a_second_sighup_still_lets_the_job_finish, |env| {
    // A closing terminal may deliver SIGHUP more than once; a second SIGTERM or
    // SIGINT escalates to a forced stop, a second SIGHUP does not.
    let (pid, id) = running_job(&mut env, &[], 2);
    env.signal(pid, libc::SIGHUP);
    wait_until(
        "the first SIGHUP to be logged",
        Duration::from_secs(10),
        || worker_log(&env, 1).contains("SIGHUP received"),
    );
    env.signal(pid, libc::SIGHUP);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let log = worker_log(&env, 1);
    assert!(log.contains("SIGHUP received again"), "{log}");
    assert!(!log.contains("killing running jobs"), "{log}");
    let job = env.job(&id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(env.read("runs.txt"), "run\n");
});

/// Whether `text` starts with `YYYY-MM-DD HH:MM:SS.mmm ±HH:MM `; returns the stamp.
fn full_stamp(text: &str) -> Option<&str> {
    let stamp = text.get(..30)?;
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let shape = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b' '
        && (b[24] == b'+' || b[24] == b'-')
        && digits(25..27)
        && b[27] == b':'
        && digits(28..30)
        && text.as_bytes().get(30) == Some(&b' ');
    shape.then_some(stamp)
}

/// Whether `text` starts with a short `HH:MM:SS.mmm ` stamp.
fn short_stamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 13
        && [0, 1, 3, 4, 6, 7, 9, 10, 11]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
        && b[12] == b' '
}

backend_test!(
    the_start_line_has_the_local_date_and_offset_and_durations_are_human,
    |env| {
        env.ensure_store();
        let quick = env.enqueue("true");
        let slow = env.enqueue("sleep 1.2");
        let out = env
            .cmd(&["worker", "start", "--burst"])
            .env("TZ", "Asia/Kolkata")
            .output()
            .expect("run a burst worker");
        assert!(out.status.success());
        let log = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = log.lines().collect();
        let start = lines
            .iter()
            .find(|l| l.contains("worker(s) started"))
            .unwrap_or_else(|| panic!("no start line: {log}"));
        let stamp = full_stamp(start).unwrap_or_else(|| panic!("no full stamp: {start}"));
        assert!(stamp.ends_with(" +05:30"), "the zone's offset: {start}");
        // The stamp's wall-clock time and offset are the instant now.
        let instant = format!("{}{}", &stamp[..23], &stamp[24..]);
        let at = instant
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{instant}: {e}"))
            .as_millisecond();
        let skew = (crate::common::now_ms() - at).abs();
        assert!(skew < 60_000, "the stamp is the local time now: {start}");
        // Every later line has the short local time.
        for line in lines.iter().filter(|l| !l.contains("worker(s) started")) {
            assert!(short_stamp(line), "a short stamp: {line}");
        }
        let end_of = |id: &str| {
            lines
                .iter()
                .find(|l| l.contains(&format!("end job {id}")))
                .unwrap_or_else(|| panic!("no end line for {id}: {log}"))
                .to_string()
        };
        let human = |line: &str| -> String {
            let after = line.split(" after ").nth(1).expect("a duration");
            after.split(';').next().expect("a duration").to_owned()
        };
        let quick_took = human(&end_of(&quick));
        assert!(
            quick_took.ends_with("ms") && quick_took[..quick_took.len() - 2].parse::<u32>().is_ok(),
            "a short job takes whole ms: {quick_took}"
        );
        let slow_took = human(&end_of(&slow));
        let seconds = slow_took
            .strip_suffix('s')
            .filter(|s| !s.ends_with('m'))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("seconds with at most a tenth: {slow_took}"));
        assert!(
            (1.2..10.0).contains(&seconds) && !slow_took.contains(".0s"),
            "{slow_took}"
        );
        assert!(
            slow_took
                .split('.')
                .nth(1)
                .is_none_or(|tenths| tenths.len() == "2s".len()),
            "one decimal at most: {slow_took}"
        );
    }
);

backend_test!(
    detach_prints_the_pid_and_the_worker_runs_until_stopped,
    |env| {
        env.ensure_store();
        let out = env.run(&["worker", "start", "--detach", "--count", "2"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid: i64 = stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the pid alone: {stdout}"));
        let _guard = Detached(pid);
        assert!(process_alive(pid));
        // Its own session: the terminal's hangup cannot reach it.
        let session = unsafe { libc::getsid(libc::pid_t::try_from(pid).expect("a pid")) };
        assert_eq!(
            i64::from(session),
            pid,
            "the worker leads a session of its own"
        );
        // It was registered before the command returned.
        let workers = env.workers(false);
        assert_eq!(workers.len(), 2, "{workers:?}");
        assert!(workers.iter().all(|w| w["pid"] == pid));
        let id = env.enqueue("echo detached");
        let job = env.wait_state(&id, "completed", Duration::from_secs(20));
        assert!(
            job["worker"]
                .as_str()
                .is_some_and(|w| w.contains(&pid.to_string()))
        );
        env.ok(&["worker", "stop"]);
        wait_until(
            "the detached worker to exit",
            Duration::from_secs(20),
            || !process_alive(pid),
        );
        let log_path = env.path().join("home/worker.log");
        let log = std::fs::read_to_string(&log_path).expect("the log in the store's directory");
        let start = log
            .lines()
            .find(|l| l.contains(&format!("(pid {pid})")))
            .unwrap_or_else(|| panic!("no start line: {log}"));
        assert!(full_stamp(start).is_some(), "{start}");
        assert!(log.contains(&format!("end job {id}")), "{log}");
        assert!(log.contains("workers stopped"), "{log}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&log_path).expect("log").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the log is private: {mode:o}");

        // --json: the pid and the log file.
        let started = env.json(&["worker", "start", "--detach"]);
        let pid = started["pid"].as_i64().expect("a pid");
        let _guard = Detached(pid);
        assert_eq!(
            PathBuf::from(started["log"].as_str().expect("a path")),
            log_path
        );
        env.wait_live_workers(1, Duration::from_secs(20));
        env.ok(&["worker", "stop"]);
        wait_until(
            "the detached worker to exit",
            Duration::from_secs(20),
            || !process_alive(pid),
        );
    }
);

#[test]
fn detach_on_a_bad_store_fails_with_the_workers_own_error() {
    let env = Env::sqlite();
    let dir = env.path().join("a-directory");
    std::fs::create_dir(&dir).expect("a directory");
    let db = dir.to_string_lossy().into_owned();
    let out = env.run(&["--db", &db, "worker", "start", "--detach"]);
    assert_error(&out, 2, "is a directory");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not start"));
}

#[test]
fn detach_never_follows_a_symlink_to_its_log() {
    let mut env = Env::sqlite();
    env.ensure_store();
    let target = env.path().join("someone-elses-file");
    std::fs::write(&target, "theirs\n").expect("a file");
    std::os::unix::fs::symlink(&target, env.path().join("home/worker.log")).expect("a symlink");
    let out = env.run(&["worker", "start", "--detach"]);
    assert_error(&out, 1, "symlink");
    assert_eq!(
        std::fs::read_to_string(&target).expect("still there"),
        "theirs\n"
    );
    assert!(env.workers(false).is_empty(), "no worker started");
}

/// `KEY=VALUE` lines of a systemd unit or environment file (comments skipped).
fn assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn contrib(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A systemd time span as the unit writes it (`90s`, `10min`, `1h`) in seconds.
fn time_span(text: &str) -> u64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..split].parse().expect("a number");
    match &text[split..] {
        "" | "s" => n,
        "min" | "m" => n * 60,
        "h" => n * 3600,
        unit => panic!("unexpected unit {unit} in {text}"),
    }
}

backend_test!(
    the_systemd_unit_fits_the_graceful_stop_and_its_command_runs,
    |env| {
        let unit = contrib("queuectl-worker@.service");
        let keys = assignments(&unit);
        let get = |key: &str| {
            keys.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the unit sets {key}"))
        };
        // SIGTERM to the worker alone: it drains; the jobs are not signalled by systemd.
        assert_eq!(get("KillMode"), "mixed");
        assert_eq!(get("KillSignal"), "SIGTERM");
        // Room for running jobs to finish: well past kill-grace (5 s) and worker stop's
        // own default wait (20 s).
        assert!(time_span(&get("TimeoutStopSec")) >= 60);
        // Crashes restart; a graceful stop (exit 0, `worker stop`) stays stopped.
        assert_eq!(get("Restart"), "on-failure");
        assert_eq!(get("EnvironmentFile"), "%E/queuectl/%i.env");

        // ExecStart, with the example environment file's arguments, is a command line
        // queuectl accepts: run it (with --burst) against this test's store.
        let exec = get("ExecStart");
        let mut words = exec.split_whitespace();
        assert!(
            words.next().is_some_and(|w| w.ends_with("/queuectl")),
            "{exec}"
        );
        let example = assignments(&contrib("example.env"));
        let worker_args = example
            .iter()
            .find(|(k, _)| k == "QUEUECTL_WORKER_ARGS")
            .map(|(_, v)| v.clone())
            .expect("the example sets QUEUECTL_WORKER_ARGS");
        let mut args: Vec<String> = Vec::new();
        for word in words {
            if word == "$QUEUECTL_WORKER_ARGS" {
                args.extend(worker_args.split_whitespace().map(str::to_owned));
            } else {
                args.push(word.to_owned());
            }
        }
        args.push("--burst".into());
        env.ensure_store();
        let id = env.enqueue("echo from systemd");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&refs);
        assert!(
            out.status.success(),
            "`queuectl {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(env.state(&id), "completed");

        // Where systemd is installed, it reads the unit without a complaint.
        if env.backend == Backend::Sqlite {
            verify_with_systemd(&unit);
        }
    }
);

fn verify_with_systemd(unit: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("queuectl-worker@test.service");
    let unit = unit.replace("/usr/local/bin/queuectl", &bin().to_string_lossy());
    std::fs::write(&path, unit).expect("write the unit");
    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("systemd-analyze not run ({e}); the unit's keys were checked above");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("queuectl-worker@"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze: {stderr}"
    );
}

backend_test!(
    a_workers_log_ends_each_job_before_it_starts_the_next,
    |env| {
        for _ in 0..30 {
            env.enqueue("true");
        }
        let out = env.run(&["worker", "start", "--count", "2", "--burst"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let log = String::from_utf8_lossy(&out.stderr);
        // Per worker, `start job` and `end job` lines alternate, starting with a start.
        let mut running: std::collections::HashMap<&str, bool> = Default::default();
        let mut ends = 0;
        for line in log.lines() {
            let Some(rest) = line.split_once(" [").map(|(_, rest)| rest) else {
                continue;
            };
            let Some((worker, what)) = rest.split_once("] ") else {
                continue;
            };
            let busy = running.entry(worker).or_default();
            if what.starts_with("start job") {
                assert!(
                    !*busy,
                    "{worker} started a job before ending the last:\n{log}"
                );
                *busy = true;
            } else if what.starts_with("end job") {
                assert!(*busy, "{worker} ended a job it had not started:\n{log}");
                *busy = false;
                ends += 1;
            }
        }
        assert_eq!(ends, 30, "{log}");
    }
);

// Issue 15, defect 1: Ctrl-Z (SIGTSTP) on a busy worker stops it between store
// round trips, never inside a write transaction: while it is stopped, another
// command writes at once instead of waiting out SQLite's busy timeout. It resumes on
// SIGCONT and finishes the work.
backend_test!(a_worker_stopped_with_ctrl_z_never_holds_the_store, |env| {
    let lines = "{\"command\": \"true\"}\n".repeat(3000);
    std::fs::write(env.file("jobs.jsonl"), lines).expect("write the jobs");
    env.ok(&["enqueue", "--file", "jobs.jsonl"]);
    let pid = env.spawn_workers(&["--count", "4"]);
    env.wait_live_workers(1, Duration::from_secs(20));
    for round in 0..5 {
        env.signal(pid, libc::SIGTSTP);
        wait_until("the worker to stop", Duration::from_secs(10), || {
            crate::common::process_stopped(i64::from(pid))
        });
        let started = std::time::Instant::now();
        let out = env.run(&["enqueue", "--", "true"]);
        assert!(out.status.success(), "round {round}: {out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "round {round}: enqueue waited {:?} on a stopped worker",
            started.elapsed()
        );
        env.signal(pid, libc::SIGCONT);
        wait_until("the worker to continue", Duration::from_secs(10), || {
            !crate::common::process_stopped(i64::from(pid))
        });
    }
    wait_until("every job to finish", Duration::from_secs(120), || {
        let status = env.status();
        status["pending"] == 0 && status["processing"] == 0
    });
    assert!(
        worker_log(&env, 1).contains("SIGTSTP received"),
        "{}",
        worker_log(&env, 1)
    );
});
