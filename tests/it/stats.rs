//! `stats`, `metrics` and `worker start --metrics` (issue 13), checked against a
//! known set of jobs: some complete, one fails and then succeeds, one dies, one is
//! cancelled, one waits for its time, one waits for a job it runs after, and one
//! waits in a paused queue. `metrics` output is read with a Prometheus text-format
//! parser (the `prometheus-parse` crate), not by string matching.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::{Value, json};

use crate::common::{Env, assert_usage_error, wait_until};

/// Enqueues the known jobs and runs them with a burst worker. Queue `alpha`: three
/// `true`, a `sleep 0.3`, and a job that fails once then succeeds (5 completed, 1
/// failed attempt), plus one waiting for `later`; `beta`: a job that fails twice and
/// dies, one cancelled, and `later` (delayed by an hour); `gamma` (paused): one
/// ready job nobody takes.
fn known_jobs(env: &mut Env) {
    env.ok(&["config", "set", "backoff-max", "0"]);
    env.ok(&["queue", "pause", "gamma"]);
    for i in 0..3 {
        env.enqueue_json(&json!({"id": format!("ok{i}"), "command": "true", "queue": "alpha"}));
    }
    env.enqueue_json(&json!({"id": "slow", "command": "sleep 0.3", "queue": "alpha"}));
    env.enqueue_json(&json!({
        "id": "flaky", "queue": "alpha", "max_retries": 2,
        "command": "test -e flaky.mark || { touch flaky.mark; exit 1; }",
    }));
    env.enqueue_json(
        &json!({"id": "doomed", "command": "exit 3", "queue": "beta", "max_retries": 1}),
    );
    env.enqueue_json(&json!({"id": "later", "command": "true", "queue": "beta", "delay": "1h"}));
    env.enqueue_json(&json!({"id": "gone", "command": "true", "queue": "beta", "delay": "1h"}));
    env.ok(&["cancel", "gone"]);
    env.enqueue_json(
        &json!({"id": "next", "command": "true", "queue": "alpha", "after": ["later"]}),
    );
    env.enqueue_json(&json!({"id": "parked", "command": "true", "queue": "gamma"}));
    let pid = env.spawn_workers(&["--burst", "--count", "2"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(60)), Some(0));
    for (id, state) in [
        ("flaky", "completed"),
        ("doomed", "dead"),
        ("slow", "completed"),
    ] {
        assert_eq!(env.state(id), state, "{id}");
    }
}

fn queue<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["queues"]
        .as_array()
        .expect("queues is an array")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {report}"))
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

backend_test!(stats_count_the_known_jobs, |env| {
    known_jobs(&mut env);
    let report = env.json(&["stats"]);
    assert_eq!(report["since_seconds"], 3600.0);
    let (alpha, beta, gamma) = (
        queue(&report, "alpha"),
        queue(&report, "beta"),
        queue(&report, "gamma"),
    );
    assert_eq!(int(&alpha["completed"]), 5, "{alpha}");
    assert_eq!(int(&alpha["failed_attempts"]), 1, "{alpha}");
    assert_eq!(alpha["success_rate"], 5.0 / 6.0);
    assert_eq!(int(&alpha["waiting_for_dependencies"]), 1, "{alpha}");
    assert_eq!(int(&beta["completed"]), 0);
    assert_eq!(int(&beta["failed_attempts"]), 2);
    assert_eq!(int(&beta["dead"]), 1);
    assert_eq!(int(&beta["cancelled"]), 1);
    assert_eq!(beta["success_rate"], 0.0);
    assert_eq!(int(&beta["waiting_for_time"]), 1);
    assert_eq!(int(&beta["ready"]), 0);
    assert_eq!(int(&gamma["ready"]), 1);
    assert!(int(&gamma["oldest_ready_age_ms"]) >= 0, "{gamma}");
    assert!(gamma["success_rate"].is_null(), "nothing ran: {gamma}");

    let total = &report["total"];
    assert_eq!(int(&total["completed"]), 5);
    assert_eq!(int(&total["failed_attempts"]), 3);
    assert_eq!(int(&total["dead"]), 1);
    assert_eq!(int(&total["cancelled"]), 1);
    assert_eq!(total["success_rate"], 5.0 / 8.0);
    assert_eq!(int(&total["ready"]), 1);
    // All 8 attempts ended within the last minute or so (a loaded machine may
    // stretch the run past one minute, never past five).
    assert_eq!(total["throughput_5m_per_second"], 8.0 / 300.0);
    assert_eq!(total["throughput_15m_per_second"], 8.0 / 900.0);
    let (p50, p95, max) = (
        int(&total["attempt_duration_p50_ms"]),
        int(&total["attempt_duration_p95_ms"]),
        int(&total["attempt_duration_max_ms"]),
    );
    assert!(p50 <= p95 && p95 <= max, "{total}");
    assert!(
        (300..30_000).contains(&max),
        "sleep 0.3 is the longest: {total}"
    );
    assert!(p50 < 300, "most jobs are `true`: {total}");
    let pickup = int(&total["pickup_delay_p95_ms"]);
    assert!((0..60_000).contains(&pickup), "{total}");
    assert!(int(&total["pickup_delay_p50_ms"]) <= pickup);

    // One queue only, and a window that excludes everything that ran.
    let only = env.json(&["stats", "--queue", "beta"]);
    assert_eq!(only["queues"].as_array().map(Vec::len), Some(1), "{only}");
    assert_eq!(int(&only["total"]["failed_attempts"]), 2);
    assert_eq!(int(&only["total"]["waiting_for_time"]), 1);
    let human = env.ok(&["stats", "--queue", "beta"]);
    assert!(
        human.contains("failed attempts") && human.contains("beta"),
        "{human}"
    );
});

backend_test!(stats_refuse_bad_input, |env| {
    assert_usage_error(&env.run(&["stats", "--since", "soon"]), "--since");
    assert_usage_error(&env.run(&["stats", "--since", "0"]), "--since");
    assert_usage_error(&env.run(&["stats", "--queue", "a b"]), "queue name");
    assert_usage_error(
        &env.run(&["worker", "start", "--metrics", "nowhere"]),
        "--metrics",
    );
});

/// Parses an exposition document, checking that every family has HELP and TYPE.
fn parse(text: &str) -> Scrape {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(name.starts_with("queuectl_"), "{line}");
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition")
}

fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A gauge, counter or untyped value (0 when the sample is absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        Some(Prom::Gauge(v) | Prom::Counter(v) | Prom::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a single value: {other:?}"),
        None => 0.0,
    }
}

/// The cumulative buckets of a histogram, as (le, count).
fn buckets(scrape: &Scrape, metric: &str, queue: &str) -> Vec<(f64, f64)> {
    match find(scrape, metric, &[("queue", queue)]).map(|s| &s.value) {
        Some(Prom::Histogram(b)) => b.iter().map(|c| (c.less_than, c.count)).collect(),
        other => panic!("{metric}{{queue={queue}}} is not a histogram: {other:?}"),
    }
}

backend_test!(metrics_match_the_known_jobs, |env| {
    known_jobs(&mut env);
    let text = env.ok(&["metrics"]);
    let scrape = parse(&text);
    let jobs = |q: &str, s: &str| value(&scrape, "queuectl_jobs", &[("queue", q), ("state", s)]);
    assert_eq!(jobs("alpha", "completed"), 5.0);
    assert_eq!(jobs("alpha", "pending"), 1.0, "waits for `later`");
    assert_eq!(jobs("beta", "dead"), 1.0);
    assert_eq!(jobs("beta", "cancelled"), 1.0);
    assert_eq!(jobs("beta", "pending"), 1.0, "`later`");
    assert_eq!(jobs("gamma", "pending"), 1.0);
    let attempts = |q: &str, o: &str| {
        value(
            &scrape,
            "queuectl_attempts_total",
            &[("queue", q), ("outcome", o)],
        )
    };
    assert_eq!(attempts("alpha", "succeeded"), 5.0);
    assert_eq!(attempts("alpha", "failed"), 1.0);
    assert_eq!(attempts("beta", "failed"), 2.0);
    assert_eq!(attempts("beta", "succeeded"), 0.0);
    assert!(matches!(
        find(&scrape, "queuectl_attempts_total", &[]).map(|s| &s.value),
        Some(Prom::Counter(_))
    ));

    let durations = buckets(&scrape, "queuectl_attempt_duration_seconds", "alpha");
    assert!(
        durations
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
    );
    assert_eq!(durations.last().copied(), Some((f64::INFINITY, 6.0)));
    let under_a_quarter = durations.iter().find(|(le, _)| *le == 0.25).map(|b| b.1);
    assert_eq!(
        under_a_quarter,
        Some(5.0),
        "all but `sleep 0.3`: {durations:?}"
    );
    let count = value(
        &scrape,
        "queuectl_attempt_duration_seconds_count",
        &[("queue", "alpha")],
    );
    assert_eq!(count, 6.0);
    let sum = value(
        &scrape,
        "queuectl_attempt_duration_seconds_sum",
        &[("queue", "alpha")],
    );
    assert!((0.3..30.0).contains(&sum), "seconds, not ms: {sum}");
    // First attempts of jobs that run after no other: five in alpha, one in beta.
    let pickups = buckets(&scrape, "queuectl_pickup_delay_seconds", "alpha");
    assert_eq!(pickups.last().map(|b| b.1), Some(5.0));
    let beta = buckets(&scrape, "queuectl_pickup_delay_seconds", "beta");
    assert_eq!(beta.last().map(|b| b.1), Some(1.0));

    let age = value(
        &scrape,
        "queuectl_oldest_ready_job_age_seconds",
        &[("queue", "gamma")],
    );
    assert!((0.0..600.0).contains(&age), "{age}");
    assert!(
        !text.contains("parked") && !text.contains("flaky"),
        "no job ids"
    );
});

/// `GET path` on `addr`; returns the status line and the body.
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

backend_test!(a_worker_serves_metrics_on_its_own_address, |env| {
    env.enqueue_json(&json!({"id": "one", "command": "true", "queue": "web"}));
    env.spawn_workers(&["--metrics", "127.0.0.1:0"]);
    let mut addr = String::new();
    wait_until(
        "the worker to say where metrics are",
        Duration::from_secs(20),
        || {
            let log = std::fs::read_to_string(env.path().join("worker-1.log")).unwrap_or_default();
            match log.split("metrics at http://").nth(1) {
                Some(rest) => {
                    addr = rest.split('/').next().unwrap_or_default().to_owned();
                    true
                }
                None => false,
            }
        },
    );
    assert!(addr.starts_with("127.0.0.1:"), "binds loopback: {addr}");
    env.wait_state("one", "completed", Duration::from_secs(20));
    let mut scrape = None;
    wait_until(
        "/metrics to show the job and a round trip",
        Duration::from_secs(20),
        || {
            let Some((status, body)) = http_get(&addr, "/metrics") else {
                return false;
            };
            assert!(status.contains("200"), "{status}");
            let parsed = parse(&body);
            let done = value(
                &parsed,
                "queuectl_jobs",
                &[("queue", "web"), ("state", "completed")],
            );
            let trips = parsed
                .samples
                .iter()
                .filter(|s| s.metric == "queuectl_store_round_trip_seconds_count")
                .map(|s| match s.value {
                    Prom::Untyped(v) | Prom::Gauge(v) | Prom::Counter(v) => v,
                    _ => 0.0,
                })
                .sum::<f64>();
            let ready = done == 1.0 && trips > 0.0;
            scrape = Some(parsed);
            ready
        },
    );
    let scrape = scrape.expect("a document");
    let live: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "queuectl_workers_live")
        .map(|s| match s.value {
            Prom::Gauge(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(live, 1.0);
    assert_eq!(
        value(&scrape, "queuectl_attempts_total", &[("queue", "web")]),
        1.0
    );
    let (status, _) = http_get(&addr, "/elsewhere").expect("an answer");
    assert!(status.contains("404"), "{status}");
});

/// Completed jobs per queue as `metrics`, `queue list` and `status` print them,
/// which must agree: `(alpha's, every queue's)`.
fn completed(env: &mut Env) -> (f64, i64) {
    let scrape = parse(&env.ok(&["metrics"]));
    let alpha = value(
        &scrape,
        "queuectl_jobs",
        &[("queue", "alpha"), ("state", "completed")],
    );
    let queues: Value =
        serde_json::from_str(&env.ok(&["queue", "list", "--json"])).expect("queue list --json");
    let listed: i64 = queues
        .as_array()
        .expect("an array of queues")
        .iter()
        .map(|q| int(&q["completed"]))
        .sum();
    let status: Value =
        serde_json::from_str(&env.ok(&["status", "--json"])).expect("status --json");
    assert_eq!(int(&status["completed"]), listed, "status and queue list");
    let by_metrics: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "queuectl_jobs" && s.labels.get("state") == Some("completed"))
        .map(|s| match s.value {
            Prom::Gauge(v) => v,
            _ => panic!("queuectl_jobs is a gauge"),
        })
        .sum();
    assert_eq!(by_metrics, listed as f64, "metrics and queue list");
    (alpha, listed)
}

backend_test!(completed_job_counts_follow_retry_clean_and_import, |env| {
    known_jobs(&mut env);
    assert_eq!(completed(&mut env), (5.0, 5));
    env.ok(&["retry", "ok0", "ok1"]);
    assert_eq!(completed(&mut env), (3.0, 3));
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(60)), Some(0));
    assert_eq!(completed(&mut env), (5.0, 5));
    let saved = env.ok(&["export", "--state", "completed"]);
    std::fs::write(env.path().join("completed.jsonl"), saved).expect("write the export");
    env.ok(&["clean", "--state", "completed"]);
    assert_eq!(completed(&mut env), (0.0, 0));
    env.ok(&["import", "completed.jsonl"]);
    assert_eq!(completed(&mut env), (5.0, 5));
});
