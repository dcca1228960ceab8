//! PostgreSQL duty (DECISIONS §26): of the idle worker processes serving one queue
//! set, only the one on duty claims when one job arrives; stop requests and cancels
//! still reach every process; a process that dies hands duty on. Each test returns
//! early, saying it was skipped, when `QUEUECTL_TEST_POSTGRES_URL` is unset.

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Backend, Env, wait_until};

/// Under the worker's own timers (one second on duty, five seconds off it), so a
/// job that only a timer found fails.
const PROMPT: Duration = Duration::from_millis(900);

/// `worker start --json` processes whose stdout (the JSON events) goes to files;
/// killed on drop if still running.
struct Processes {
    children: Vec<Child>,
    outputs: Vec<std::path::PathBuf>,
}

impl Processes {
    fn start(env: &mut Env, n: usize, args: &[&str]) -> Processes {
        env.ensure_store();
        let mut processes = Processes {
            children: Vec::new(),
            outputs: Vec::new(),
        };
        for _ in 0..n {
            processes.add(env, args);
        }
        processes
    }

    fn add(&mut self, env: &Env, args: &[&str]) {
        let out = env.file(&format!("events-{}.jsonl", self.outputs.len() + 1));
        let mut all = vec!["--json", "worker", "start"];
        all.extend_from_slice(args);
        let child = env
            .cmd(&all)
            .stdout(File::create(&out).expect("create an events file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker process");
        self.children.push(child);
        self.outputs.push(out);
    }

    /// Waits until every process exited with 0; returns their `stopped` events.
    fn wait_stopped(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        for child in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_until("a worker process to exit", left, || {
                child.try_wait().expect("try_wait").is_some()
            });
            let status = child.wait().expect("wait");
            assert_eq!(status.code(), Some(0), "a worker process failed");
        }
        self.outputs
            .iter()
            .flat_map(|path| {
                std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|e| e["event"] == "stopped")
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Enqueues one job (`--queue` if given) and returns how long it waited to start.
fn pickup(env: &Env, queue: Option<&str>) -> Duration {
    let mut args = vec!["enqueue", "--command", "true"];
    if let Some(q) = queue {
        args.extend(["--queue", q]);
    }
    let out = env.ok(&args);
    let id = out.trim().strip_prefix("Enqueued: ").expect("a job id");
    let mut job = Value::Null;
    wait_until(
        &format!("job {id} to start"),
        Duration::from_secs(10),
        || {
            job = env.job(id);
            job["started_at"].is_string()
        },
    );
    started_after(&job)
}

/// `started_at - created_at` of a job, as the store recorded them.
fn started_after(job: &Value) -> Duration {
    let at = |key: &str| {
        let text = job[key].as_str().expect("a timestamp");
        text.parse::<jiff::Timestamp>().expect("an RFC 3339 time")
    };
    let waited = at("started_at").duration_since(at("created_at"));
    Duration::try_from(waited).unwrap_or_default()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn one_job_at_a_time_costs_at_most_two_claims_whatever_the_number_of_idle_processes() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let mut processes = Processes::start(&mut env, 4, &["--count", "2"]);
    env.wait_live_workers(8, Duration::from_secs(20));
    let jobs = 30;
    let waits: Vec<Duration> = (0..jobs).map(|_| pickup(&env, None)).collect();
    let slowest = waits.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < PROMPT && median(waits.clone()) < Duration::from_millis(200),
        "jobs waited {waits:?} to start"
    );
    // `worker stop` is a wake-up for every process, on duty or not.
    env.ok(&["worker", "stop"]);
    let stopped = processes.wait_stopped(Duration::from_secs(20));
    assert_eq!(stopped.len(), 4, "{stopped:?}");
    let claims: u64 = stopped
        .iter()
        .map(|e| e["claim_round_trips"].as_u64().expect("claim_round_trips"))
        .sum();
    let ran: u64 = stopped
        .iter()
        .map(|e| e["succeeded"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(ran, jobs);
    assert!(
        claims <= 2 * jobs,
        "{claims} claim statements for {jobs} jobs: {stopped:?}"
    );
}

#[test]
fn when_the_process_on_duty_is_killed_another_takes_over() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let _processes = Processes::start(&mut env, 3, &["--count", "2"]);
    env.wait_live_workers(6, Duration::from_secs(20));
    let first = env.enqueue("true");
    let job = env.wait_state(&first, "completed", Duration::from_secs(10));
    // The process that ran the job is the one on duty: worker ids are host-pid-n.
    let worker = job["worker"].as_str().expect("a worker id").to_owned();
    let pid: i32 = worker
        .rsplit('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a pid in the worker id");
    // SAFETY: kill takes plain integers; `pid` is a worker process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let second = env.enqueue("true");
    let job = env.wait_state(&second, "completed", Duration::from_secs(5));
    assert!(
        !job["worker"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("-{pid}-")),
        "{job}"
    );
    assert!(started_after(&job) < Duration::from_secs(3), "{job}");
    // Within a second of the death another process holds duty (a timer claim may
    // have taken the second job before), and from then on answers at once.
    wait_until(
        "another process to take duty",
        Duration::from_secs(5),
        || pickup(&env, None) < PROMPT,
    );
    let waits: Vec<Duration> = (0..3).map(|_| pickup(&env, None)).collect();
    assert!(waits.iter().all(|w| *w < PROMPT), "{waits:?}");
}

#[test]
fn a_busy_process_on_duty_hands_duty_on_and_cancels_reach_every_process() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let mut processes = Processes::start(&mut env, 3, &["--count", "1"]);
    env.wait_live_workers(3, Duration::from_secs(20));
    // One slot each: every job after the first finds the process on duty busy, and
    // three run at once only if duty passed from process to process.
    let started = Instant::now();
    let ids: Vec<String> = (0..3)
        .map(|i| env.enqueue(&format!("touch running-{i}; sleep 60")))
        .collect();
    wait_until("three jobs to run at once", Duration::from_secs(10), || {
        (0..3).all(|i| env.file(&format!("running-{i}")).exists())
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut args = vec!["cancel"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    for id in &ids {
        env.wait_state(id, "cancelled", Duration::from_secs(10));
    }
    // Idle again: a new job is taken at once.
    assert!(pickup(&env, None) < PROMPT);
    env.ok(&["worker", "stop"]);
    assert_eq!(processes.wait_stopped(Duration::from_secs(20)).len(), 3);
}

#[test]
fn each_queue_set_has_a_process_on_duty() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    let mut processes = Processes::start(&mut env, 2, &["--queue", "a"]);
    processes.add(&env, &["--queue", "b"]);
    processes.add(&env, &["--queue", "b"]);
    processes.add(&env, &["--queue", "a,b"]);
    env.wait_live_workers(5, Duration::from_secs(20));
    // Queue a paused: the `a` and `a,b` processes on duty find nothing there, and
    // the `b` jobs are still taken at once.
    env.ok(&["queue", "pause", "a"]);
    let _waiting = env.ok(&["enqueue", "--command", "true", "--queue", "a"]);
    for queue in ["b", "b", "b"] {
        let waited = pickup(&env, Some(queue));
        assert!(waited < PROMPT, "a job in {queue} waited {waited:?}");
    }
    env.ok(&["queue", "resume", "a"]);
    for queue in ["a", "b", "a", "b"] {
        let waited = pickup(&env, Some(queue));
        assert!(waited < PROMPT, "a job in {queue} waited {waited:?}");
    }
    env.ok(&["worker", "stop"]);
    assert_eq!(processes.wait_stopped(Duration::from_secs(20)).len(), 5);
}
