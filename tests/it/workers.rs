//! Worker processes: many processes sharing one queue (each job runs exactly once),
//! `worker list`, `status`, how fast idle workers react, graceful SIGTERM/SIGINT,
//! `worker stop` (graceful, `--force`, `--timeout`), `--burst`, and a queue that
//! survives its workers being restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{assert_usage_error, parse_time, process_alive, wait_until};

backend_test!(
    four_hundred_jobs_over_three_processes_run_exactly_once,
    |env| {
        let p1 = env.spawn_workers(&["--count", "2"]);
        let p2 = env.spawn_workers(&["--count", "2"]);
        let p3 = env.spawn_workers(&["--count", "2"]);
        env.wait_live_workers(6, Duration::from_secs(20));
        let ids: Vec<String> = (0..400).map(|i| format!("job{i:03}")).collect();
        let lines: String = ids
            .iter()
            .map(|id| {
                format!(
                    "{}\n",
                    json!({"id": id, "command": format!("echo {id} >> ran.txt")})
                )
            })
            .collect();
        std::fs::write(env.file("jobs.jsonl"), lines).unwrap();
        env.ok(&["enqueue", "--file", "jobs.jsonl"]);
        wait_until("400 completed jobs", Duration::from_secs(180), || {
            env.status()["completed"] == 400
        });

        // Each id appears in the file exactly once.
        let ran = env.read("ran.txt");
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for line in ran.lines() {
            *counts.entry(line).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "jobs ran more than once: {twice:?}");
        assert_eq!(counts.len(), 400, "every job ran");
        let status = env.status();
        for state in ["pending", "processing", "failed", "dead"] {
            assert_eq!(status[state], 0, "{state}: {status}");
        }

        // Every job took exactly one attempt, and the work was shared between processes.
        let jobs = env.json(&["list", "--state", "completed"]);
        let jobs = jobs.as_array().unwrap();
        assert_eq!(jobs.len(), 400);
        let workers: BTreeMap<String, i64> = env
            .workers(true)
            .iter()
            .map(|w| {
                (
                    w["id"].as_str().unwrap().to_owned(),
                    w["pid"].as_i64().unwrap(),
                )
            })
            .collect();
        let mut pids = BTreeSet::new();
        for job in jobs {
            assert_eq!(job["attempts"], 1, "{job}");
            let worker = job["worker"]
                .as_str()
                .expect("completed job names its worker");
            pids.insert(workers.get(worker).copied().expect("worker is registered"));
        }
        assert!(
            pids.len() >= 2,
            "400 jobs all ran in one process of three: {pids:?}"
        );
        let out = env.run(&["worker", "stop"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for pid in [p1, p2, p3] {
            assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
        }
    }
);

backend_test!(worker_list_fields_and_idle_busy_states, |env| {
    env.spawn_workers(&["--count", "2"]);
    env.wait_live_workers(2, Duration::from_secs(20));
    let workers = env.workers(false);
    assert_eq!(workers.len(), 2);
    for w in &workers {
        for field in [
            "id",
            "host",
            "pid",
            "state",
            "job",
            "started_at",
            "heartbeat_at",
        ] {
            assert!(w.get(field).is_some(), "worker has no {field}: {w}");
        }
        assert!(
            w["id"].is_string() && w["host"].is_string() && w["pid"].is_i64(),
            "{w}"
        );
        assert_eq!(w["state"], "idle", "{w}");
        assert!(w["job"].is_null(), "{w}");
        parse_time(w["started_at"].as_str().unwrap());
        parse_time(w["heartbeat_at"].as_str().unwrap());
    }
    let id = env.enqueue("sleep 20");
    env.wait_state(&id, "processing", Duration::from_secs(10));
    let mut workers = Vec::new();
    wait_until("one busy worker", Duration::from_secs(5), || {
        workers = env.workers(false);
        workers.iter().any(|w| w["state"] == "busy")
    });
    let busy: Vec<&Value> = workers.iter().filter(|w| w["state"] == "busy").collect();
    let idle: Vec<&Value> = workers.iter().filter(|w| w["state"] == "idle").collect();
    assert_eq!((busy.len(), idle.len()), (1, 1), "{workers:?}");
    assert_eq!(busy[0]["job"], id.as_str());
    assert!(idle[0]["job"].is_null());
    assert_eq!(env.job(&id)["worker"], busy[0]["id"]);
    // The table has every column.
    let table = env.ok(&["worker", "list"]);
    let header = table.lines().next().unwrap();
    for column in ["ID", "HOST", "PID", "STATE", "JOB"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("busy") && table.contains("idle"), "{table}");
    env.ok(&["worker", "stop", "--force"]);
});

backend_test!(status_counts_every_state_and_the_workers, |env| {
    env.ensure_store();
    let status = env.status();
    for state in ["pending", "processing", "completed", "failed", "dead"] {
        assert_eq!(status[state], 0, "{state} is a top-level count: {status}");
    }
    assert_eq!(status["workers"]["live"], 0);
    assert_eq!(status["workers"]["busy"], 0);

    let ok = env.enqueue("true");
    let dead = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 0}));
    let failed = env.enqueue_json(&json!({"command": "exit 1", "max_retries": 1}));
    env.ok(&["config", "set", "backoff-base", "1000"]);
    env.ok(&["config", "set", "backoff-max", "3600"]);
    env.spawn_workers(&["--count", "2"]);
    env.wait_state(&ok, "completed", Duration::from_secs(20));
    env.wait_state(&dead, "dead", Duration::from_secs(20));
    env.wait_state(&failed, "failed", Duration::from_secs(20));
    // Both workers busy with long jobs, so a third job stays pending.
    let running1 = env.enqueue("sleep 20");
    let running2 = env.enqueue("sleep 20");
    env.wait_state(&running1, "processing", Duration::from_secs(10));
    env.wait_state(&running2, "processing", Duration::from_secs(10));
    env.enqueue("true");
    let expected = json!({
        "pending": 1, "processing": 2, "completed": 1, "failed": 1, "dead": 1,
        "workers": {"live": 2, "busy": 2},
    });
    // A worker may claim the third job ahead while its `sleep` has just started; it
    // gives it back within 50 ms (claim-ahead hold), so poll for the settled counts.
    let mut status = Value::Null;
    let states = ["pending", "processing", "completed", "failed", "dead"];
    wait_until(
        "status to show both workers busy and one job pending",
        Duration::from_secs(10),
        || {
            status = env.status();
            status["workers"]["busy"] == 2 && states.iter().all(|k| status[k] == expected[k])
        },
    );
    for key in states {
        assert_eq!(status[key], expected[key], "{key}: {status}");
    }
    assert_eq!(status["workers"]["live"], 2, "{status}");
    let table = env.ok(&["status"]);
    for state in ["pending", "processing", "completed", "failed", "dead"] {
        assert!(table.contains(state), "{table}");
    }
    env.ok(&["worker", "stop", "--force"]);
    assert_eq!(env.status()["workers"]["live"], 0);
});

backend_test!(idle_workers_pick_up_a_new_job_quickly, |env| {
    env.spawn_workers(&["--count", "2"]);
    env.wait_live_workers(2, Duration::from_secs(20));
    // Let the workers settle into waiting, so this measures wake-up, not start-up.
    let settled = Instant::now();
    wait_until("workers to settle", Duration::from_secs(5), || {
        settled.elapsed() > Duration::from_millis(1500)
    });
    let mut delays = Vec::new();
    for _ in 0..5 {
        let id = env.enqueue("true");
        let job = env.wait_state(&id, "completed", Duration::from_secs(20));
        let created = parse_time(job["created_at"].as_str().unwrap());
        let started = parse_time(job["started_at"].as_str().expect("started_at"));
        delays.push(started - created);
    }
    eprintln!("enqueue-to-start delays (ms): {delays:?}");
    delays.sort_unstable();
    // The contract is 100 ms. A missed wake-up falls back to the 1 s poll, so the
    // median must stay well below that even on a loaded machine, and the best case
    // must meet the contract.
    assert!(
        delays[0] < 100,
        "best enqueue-to-start {} ms: {delays:?}",
        delays[0]
    );
    assert!(
        delays[2] < 500,
        "median enqueue-to-start {} ms: {delays:?}",
        delays[2]
    );
});

/// Starts one worker running `sleep SECS; echo finished > done.txt`; returns (pid, job id).
fn busy_worker(env: &mut crate::common::Env, secs: u32) -> (u32, String) {
    let pid = env.spawn_workers(&[]);
    env.wait_live_workers(1, Duration::from_secs(20));
    let id = env.enqueue(&format!("sleep {secs}; echo finished > done.txt"));
    env.wait_state(&id, "processing", Duration::from_secs(10));
    (pid, id)
}

backend_test!(sigterm_lets_the_running_job_finish_and_exits_0, |env| {
    let (pid, id) = busy_worker(&mut env, 2);
    env.signal(pid, libc::SIGTERM);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
    assert_eq!(env.read("done.txt"), "finished\n", "the job ran to its end");
    let job = env.job(&id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 1);
    assert_eq!(env.workers(false), Vec::<Value>::new());
    let all = env.workers(true);
    assert!(all.iter().all(|w| w["state"] == "stopped"), "{all:?}");
});

backend_test!(sigint_lets_the_running_job_finish_and_exits_0, |env| {
    let (pid, id) = busy_worker(&mut env, 2);
    env.signal(pid, libc::SIGINT);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
    assert_eq!(env.read("done.txt"), "finished\n");
    assert_eq!(env.state(&id), "completed");
});

backend_test!(
    worker_stop_from_another_process_waits_for_the_workers,
    |env| {
        let (pid, id) = busy_worker(&mut env, 2);
        let idle = env.spawn_workers(&["--count", "2"]);
        env.wait_live_workers(3, Duration::from_secs(20));
        let out = env.run(&["worker", "stop"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // When `worker stop` returns, the job has finished and the workers are gone.
        assert_eq!(
            env.read("done.txt"),
            "finished\n",
            "worker stop returned before the job finished"
        );
        assert_eq!(env.state(&id), "completed");
        assert_eq!(env.workers(false), Vec::<Value>::new());
        assert_eq!(env.wait_worker(pid, Duration::from_secs(5)), Some(0));
        assert_eq!(env.wait_worker(idle, Duration::from_secs(5)), Some(0));
        // With nobody running, stop says so and succeeds.
        let out = env.ok(&["worker", "stop"]);
        assert!(out.to_lowercase().contains("no workers"), "{out}");
    }
);

backend_test!(
    worker_stop_force_kills_the_job_which_goes_back_to_pending,
    |env| {
        let pid = env.spawn_workers(&[]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let id = env.enqueue("echo $$ > job.pid; exec sleep 60");
        env.wait_state(&id, "processing", Duration::from_secs(10));
        wait_until("the job to write its pid", Duration::from_secs(10), || {
            !env.read("job.pid").is_empty()
        });
        let job_pid: i64 = env.read("job.pid").trim().parse().unwrap();
        let start = Instant::now();
        let out = env.run(&["worker", "stop", "--force"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "--force took {:?}",
            start.elapsed()
        );
        assert_eq!(env.wait_worker(pid, Duration::from_secs(10)), Some(0));
        let job = env.job(&id);
        assert_eq!(job["state"], "pending", "{job}");
        assert_eq!(job["attempts"], 0, "a forced stop does not use an attempt");
        wait_until(
            "the killed job's process to be gone",
            Duration::from_secs(5),
            || !process_alive(job_pid),
        );
        // It runs again later, from the start.
        std::fs::remove_file(env.file("job.pid")).unwrap();
        env.spawn_workers(&[]);
        env.wait_state(&id, "processing", Duration::from_secs(10));
        env.ok(&["worker", "stop", "--force"]);
    }
);

backend_test!(worker_stop_timeout_names_the_workers_still_running, |env| {
    let (pid, id) = busy_worker(&mut env, 30);
    let out = env.run(&["worker", "stop", "--timeout", "1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&id),
        "says which job is still running: {stderr}"
    );
    assert_eq!(
        env.state(&id),
        "processing",
        "a graceful stop leaves the job running"
    );
    env.ok(&["worker", "stop", "--force"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(10)), Some(0));
    assert_eq!(env.state(&id), "pending");
});

backend_test!(burst_exits_when_the_queue_is_empty, |env| {
    let pid = env.spawn_workers(&["--burst", "--count", "3"]);
    assert_eq!(
        env.wait_worker(pid, Duration::from_secs(20)),
        Some(0),
        "nothing to do: exits at once"
    );
    let ids: Vec<String> = (0..5)
        .map(|i| env.enqueue(&format!("echo {i} >> ran.txt")))
        .collect();
    let pid = env.spawn_workers(&["--burst", "--count", "3"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    for id in &ids {
        assert_eq!(env.state(id), "completed");
    }
    assert_eq!(env.read("ran.txt").lines().count(), 5);
});

backend_test!(the_queue_survives_worker_restarts, |env| {
    env.ok(&["config", "set", "backoff-base", "3"]);
    env.ok(&["config", "set", "max-retries", "4"]);
    let first: Vec<String> = (0..3)
        .map(|i| env.enqueue(&format!("echo first{i} >> ran.txt")))
        .collect();
    // Fails once (then waits 3 s in `failed`), succeeds the second time.
    let flaky =
        env.enqueue("if [ -e flag ]; then echo flaky >> ran.txt; else touch flag; exit 1; fi");
    let pid = env.spawn_workers(&[]);
    env.wait_state(&flaky, "failed", Duration::from_secs(20));
    for id in &first {
        env.wait_state(id, "completed", Duration::from_secs(20));
    }
    env.signal(pid, libc::SIGTERM);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
    // Between runs, more work arrives.
    let later: Vec<String> = (0..2)
        .map(|i| env.enqueue(&format!("echo later{i} >> ran.txt")))
        .collect();
    assert_eq!(env.state(&flaky), "failed", "still waiting out its backoff");
    // A new worker process picks everything up; nothing completed runs again.
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(&flaky);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 2);
    for id in first.iter().chain(&later) {
        assert_eq!(env.state(id), "completed");
    }
    let text = env.read("ran.txt");
    let mut ran: Vec<&str> = text.lines().collect();
    ran.sort();
    assert_eq!(
        ran,
        vec!["first0", "first1", "first2", "flaky", "later0", "later1"]
    );
    assert_eq!(
        env.json(&["config", "get", "backoff-base"])["backoff-base"],
        3
    );
    assert_eq!(
        env.json(&["config", "get", "max-retries"])["max-retries"],
        4
    );
});

backend_test!(count_zero_is_refused_and_nothing_changes, |env| {
    env.enqueue("true");
    let before = env.snapshot();
    for (count, needle) in [
        ("0", "count"),
        ("-1", "-1"),
        ("abc", "count"),
        ("100000", "count"),
    ] {
        let out = env.run(&["worker", "start", "--count", count]);
        assert_usage_error(&out, needle);
        assert_eq!(env.snapshot(), before, "--count {count}");
    }
});

/// What each thread of process `pid` has used so far: its name, run time in
/// nanoseconds (the scheduler's own count, `/proc/PID/task/TID/schedstat`, not
/// 10 ms ticks) and how often it blocked and woke again (voluntary context switches).
fn thread_usage(pid: u32) -> Vec<(String, u64, u64)> {
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(schedstat), Ok(status)) = (
            std::fs::read_to_string(dir.join("schedstat")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread ended between the listing and the reads
        };
        let run_ns = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let wakeups = field("voluntary_ctxt_switches:").parse().unwrap_or(0);
        let name = format!("{}/{}", field("Name:"), task.file_name().to_string_lossy());
        threads.push((name, run_ns, wakeups));
    }
    threads
}

backend_test!(an_idle_worker_costs_under_1_percent_of_a_core, |env| {
    let pid = env.spawn_workers(&["--count", "4"]);
    env.wait_live_workers(4, Duration::from_secs(20));
    // Measure three windows of several seconds (a measurement, not a wait for an
    // outcome) and judge the quietest: the first may still hold start-up work (the
    // first heartbeat's recovery and retention passes), and on a shared virtual
    // machine a window can catch time the host took from a running thread; an idle
    // loop that costs too much costs it in every window. Wake-ups are counted too: a
    // polling loop shows up there whatever the machine is doing.
    let window = Duration::from_secs(4);
    let mut windows = Vec::new();
    for _ in 0..3 {
        let before = thread_usage(pid);
        let start = Instant::now();
        wait_until("the measurement window", window * 2, || {
            start.elapsed() >= window
        });
        let after = thread_usage(pid);
        let seconds = start.elapsed().as_secs_f64();
        let per_thread: Vec<(String, f64, f64)> = after
            .iter()
            .map(|(name, run_ns, wakeups)| {
                let (run0, wake0) = before
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or((0, 0), |(_, r, w)| (*r, *w));
                let share = run_ns.saturating_sub(run0) as f64 / 1e9 / seconds;
                let wakeups_per_second = wakeups.saturating_sub(wake0) as f64 / seconds;
                (name.clone(), share, wakeups_per_second)
            })
            .collect();
        let share: f64 = per_thread.iter().map(|t| t.1).sum();
        let wakeups: f64 = per_thread.iter().map(|t| t.2).sum();
        windows.push((share, wakeups, per_thread));
    }
    let summary: Vec<String> = windows
        .iter()
        .map(|(share, wakeups, _)| format!("{:.3}% and {wakeups:.1} wake-ups/s", share * 100.0))
        .collect();
    eprintln!(
        "idle worker process used {summary:?} in three windows; {:.3?}",
        windows[2].2
    );
    let quietest = windows
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("three windows");
    assert!(
        quietest.0 < 0.01,
        "4 idle workers used {:.2}% of a core in the quietest window (all: {summary:?}; \
         per thread: {:.4?})",
        quietest.0 * 100.0,
        quietest.2
    );
    // Once a second the supervisor beats and the store watcher sees that commit
    // (about 4 wake-ups a second on SQLite); on PostgreSQL each round trip of the beat
    // waits on the socket and counts (about 12). A polling loop of 10 ms or less is
    // far above this.
    assert!(
        quietest.1 < 30.0,
        "4 idle workers woke {:.1} times a second (all: {summary:?}; per thread: {:.4?})",
        quietest.1,
        quietest.2
    );
    env.signal(pid, libc::SIGTERM);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(20)), Some(0));
});
