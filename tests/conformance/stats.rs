//! `stats` and `metrics` aggregates (issue 13): both stores give the same numbers for
//! the same jobs and attempts, imported with known times; the attempt history's
//! rollup counts every attempt once, however often `metrics` runs, and starts over
//! after an import.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use queuectl::job::{AttemptOutcome, Job, JobState};
use queuectl::store::stats::{BUCKET_BOUNDS_MS, MetricsRaw, StatsRequest};
use queuectl::store::{AttemptFacts, AttemptRecord, JobRecord};

use crate::{LONG_LEASE, claim, conformance_test, new_job, report, succeeded};

const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn job(id: &str, queue: &str, state: JobState, created_at: i64) -> Job {
    let mut job = Job::pending(new_job(id), 3, created_at);
    job.queue = queue.to_owned();
    job.state = state;
    job.updated_at = created_at;
    job
}

/// An attempt claimed at `started_at` that ran `ms`.
fn attempt(token: i64, started_at: i64, ms: i64, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        lease_token: token,
        worker_id: Some("w".into()),
        started_at: Some(started_at),
        finished_at: started_at + ms,
        outcome,
        exit_code: Some(i64::from(outcome != AttemptOutcome::Succeeded)),
        error: None,
        output_tail: None,
        facts: AttemptFacts::default(),
        output_total: None,
    }
}

fn finished(mut job: Job, attempts: Vec<AttemptRecord>) -> JobRecord {
    if let Some(last) = attempts.last() {
        job.finished_at = Some(last.finished_at);
        job.started_at = last.started_at;
        job.lease_token = last.lease_token;
        job.attempts = attempts.len() as i64;
    }
    job.next_run_at = job.finished_at.unwrap_or(job.next_run_at);
    JobRecord { job, attempts }
}

/// The known set, relative to `now`: in q1, `a1` (created 10 min ago, picked up
/// after 100 ms, succeeded in 250 ms), `a2` (failed in 1.5 s 3 minutes ago, then
/// succeeded in 20 ms 2 minutes ago) and `r1` (ready since 5 s ago); in q2, `b1`
/// (failed 2 hours ago, failed again 30 s ago: dead), `c1` (cancelled 20 s ago)
/// and `w1` (waiting an hour for its time).
fn known(now: i64) -> Vec<JobRecord> {
    use AttemptOutcome::{Failed, Succeeded};
    let a1 = now - 10 * MIN;
    let a2 = now - 3 * MIN;
    let b1 = now - 120 * MIN;
    let mut records = vec![
        finished(
            job("a1", "q1", JobState::Completed, a1),
            vec![attempt(1, a1 + 100, 250, Succeeded)],
        ),
        finished(
            job("a2", "q1", JobState::Completed, a2),
            vec![
                attempt(1, a2 + 40, 1500, Failed),
                attempt(2, now - 2 * MIN, 20, Succeeded),
            ],
        ),
        finished(
            job("b1", "q2", JobState::Dead, b1),
            vec![
                attempt(1, b1 + 5000, 70, Failed),
                attempt(2, now - 30_000, 30, Failed),
            ],
        ),
    ];
    let mut c1 = job("c1", "q2", JobState::Cancelled, now - 40_000);
    c1.finished_at = Some(now - 20_000);
    records.push(JobRecord {
        job: c1,
        attempts: Vec::new(),
    });
    let mut w1 = job("w1", "q2", JobState::Pending, now - 1000);
    w1.next_run_at = now + 60 * MIN;
    w1.run_at = Some(w1.next_run_at);
    records.push(JobRecord {
        job: w1,
        attempts: Vec::new(),
    });
    let mut r1 = job("r1", "q1", JobState::Pending, now - 5000);
    r1.next_run_at = now - 5000;
    records.push(JobRecord {
        job: r1,
        attempts: Vec::new(),
    });
    records
}

conformance_test!(stats_of_a_known_set_of_jobs, |stores| {
    let mut store = stores.open();
    let now = now_ms();
    store.import(&known(now)).expect("import");
    let raw = store
        .stats(&StatsRequest {
            window: Duration::from_secs(3600),
            queue: None,
        })
        .expect("stats");
    assert!((now..now + 60_000).contains(&raw.now), "the store's clock");
    let report = queuectl::stats::summarize(&raw, Duration::from_secs(3600));
    let names: Vec<_> = report.queues.iter().map(|q| q.queue.clone()).collect();
    assert_eq!(names, [Some("q1".to_owned()), Some("q2".to_owned())]);
    let (q1, q2) = (&report.queues[0], &report.queues[1]);

    assert_eq!(
        (q1.completed, q1.failed_attempts, q1.dead, q1.cancelled),
        (2, 1, 0, 0)
    );
    assert_eq!(q1.success_rate, Some(2.0 / 3.0));
    assert_eq!(
        q1.throughput_per_second,
        [0.0, 2.0 / 300.0, 3.0 / 900.0],
        "a1 ended 10 min ago, a2's two attempts 2 and 3 min ago"
    );
    assert_eq!(
        (q1.duration_p50_ms, q1.duration_p95_ms, q1.duration_max_ms),
        (Some(250), Some(1500), Some(1500))
    );
    assert_eq!((q1.pickup_p50_ms, q1.pickup_p95_ms), (Some(40), Some(100)));
    assert_eq!(
        (q1.ready, q1.waiting_for_time, q1.waiting_for_dependencies),
        (1, 0, 0)
    );
    let age = q1.oldest_ready_age_ms.expect("r1 is ready");
    assert!((5000..65_000).contains(&age), "{age}");

    assert_eq!(
        (q2.completed, q2.failed_attempts, q2.dead, q2.cancelled),
        (0, 1, 1, 1)
    );
    assert_eq!(q2.success_rate, Some(0.0));
    assert_eq!(q2.throughput_per_second[0], 1.0 / 60.0);
    assert_eq!(
        q2.duration_max_ms,
        Some(30),
        "b1's first attempt is outside the hour"
    );
    assert_eq!(
        q2.pickup_p50_ms, None,
        "b1's first attempt is outside the hour"
    );
    assert_eq!((q2.ready, q2.waiting_for_time), (0, 1));

    assert_eq!(report.total.completed, 2);
    assert_eq!(report.total.failed_attempts, 2);
    assert_eq!(report.total.duration_p50_ms, Some(30));

    let only = store
        .stats(&StatsRequest {
            window: Duration::from_secs(7200 + 600),
            queue: Some("q2".into()),
        })
        .expect("stats");
    assert_eq!(only.queues.len(), 1);
    assert_eq!(only.queues[0].failed_attempts, 2, "both of b1's attempts");
    assert_eq!(only.pickups, [("q2".to_owned(), 5000)]);
});

/// (count, sum_ms) of `queue`'s cells in `cells`, over every bucket and outcome.
fn cells(raw: &[queuectl::store::stats::BucketCount], queue: &str) -> (i64, i64) {
    raw.iter()
        .filter(|c| c.queue == queue)
        .fold((0, 0), |(n, s), c| (n + c.count, s + c.sum_ms))
}

fn jobs(raw: &MetricsRaw, queue: &str, state: &str) -> i64 {
    raw.jobs
        .iter()
        .find(|(q, s, _)| q == queue && s == state)
        .map_or(0, |r| r.2)
}

fn check_metrics(raw: &MetricsRaw) {
    assert_eq!(jobs(raw, "q1", "completed"), 2);
    assert_eq!(jobs(raw, "q1", "pending"), 1);
    assert_eq!(jobs(raw, "q2", "dead"), 1);
    assert_eq!(jobs(raw, "q2", "cancelled"), 1);
    assert_eq!(jobs(raw, "q2", "pending"), 1);
    assert_eq!(cells(&raw.attempts, "q1"), (3, 250 + 1500 + 20));
    assert_eq!(cells(&raw.attempts, "q2"), (2, 70 + 30));
    let failed: i64 = raw
        .attempts
        .iter()
        .filter(|c| c.queue == "q2" && c.outcome == "failed")
        .map(|c| c.count)
        .sum();
    assert_eq!(failed, 2);
    // 1500 ms lands in the bucket up to 2.5 s.
    let slow = BUCKET_BOUNDS_MS.iter().position(|b| *b == 2500);
    assert!(
        raw.attempts
            .iter()
            .any(|c| c.queue == "q1" && c.bucket == slow && c.count == 1)
    );
    assert_eq!(cells(&raw.pickups, "q1"), (2, 140));
    assert_eq!(cells(&raw.pickups, "q2"), (1, 5000));
    let oldest: Vec<_> = raw.oldest_ready.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(oldest, ["q1"]);
}

conformance_test!(
    metrics_count_every_attempt_once_across_the_rollup,
    |stores| {
        let mut store = stores.open();
        let now = now_ms();
        store.import(&known(now)).expect("import");
        // The first call rolls up what ended over 5 minutes ago (a1, b1's first
        // attempt); later calls add the rollup to the rest, never counting twice.
        let first = store.metrics().expect("metrics");
        check_metrics(&first);
        let mut raw = stores.raw();
        let mark = raw.number("SELECT until FROM stats_rolled");
        assert!(mark > now - 10 * MIN && mark <= now, "rolled up to {mark}");
        assert!(raw.number("SELECT count(*) FROM stats_rollup") > 0);
        check_metrics(&store.metrics().expect("metrics"));
        check_metrics(&stores.open().metrics().expect("metrics"));

        // An import may bring attempts older than the mark: the rollup starts over.
        let mut extra = job("x1", "q3", JobState::Completed, now - 60 * MIN);
        extra.next_run_at = now - 60 * MIN;
        let record = finished(
            extra,
            vec![attempt(1, now - 60 * MIN, 10, AttemptOutcome::Succeeded)],
        );
        store.import(&[record]).expect("import");
        assert_eq!(raw.number("SELECT until FROM stats_rolled"), 0);
        let after = store.metrics().expect("metrics");
        check_metrics(&after);
        assert_eq!(cells(&after.attempts, "q3"), (1, 10));
        assert_eq!(jobs(&after, "q3", "completed"), 1);
    }
);

/// Completed jobs per queue as `metrics`, `counts` and `queues` report them, which
/// must agree: `queue`'s, and the total over every queue.
fn completed_everywhere(store: &mut dyn queuectl::store::Store, queue: &str) -> (i64, i64) {
    let raw = store.metrics().expect("metrics");
    let by_metrics = jobs(&raw, queue, "completed");
    let by_queues = store
        .queues()
        .expect("queues")
        .into_iter()
        .find(|q| q.name == queue)
        .map_or(0, |q| q.counts.get(JobState::Completed));
    assert_eq!(by_metrics, by_queues, "metrics and queues agree on {queue}");
    let total: i64 = raw
        .jobs
        .iter()
        .filter(|(_, s, _)| s == "completed")
        .map(|r| r.2)
        .sum();
    let counts = store.counts().expect("counts");
    assert_eq!(
        counts.get(JobState::Completed),
        total,
        "counts and metrics agree"
    );
    (by_metrics, total)
}

/// The rollup's completed jobs of `queue` (what no recent attempt locates).
fn rolled_up(raw: &mut crate::Raw, queue: &str) -> i64 {
    raw.number(&format!(
        "SELECT CAST(coalesce(sum(jobs), 0) AS BIGINT) FROM completed_rollup \
         WHERE queue = '{queue}'"
    ))
}

conformance_test!(
    completed_jobs_stay_exact_through_retry_finish_clean_and_import,
    |stores| {
        use queuectl::store::CleanRequest;
        let mut store = stores.open();
        let now = now_ms();
        let mut records = known(now);
        // Completed without any recorded attempt (an import from elsewhere): only
        // the rollup can count it.
        let mut bare = job("n1", "q3", JobState::Completed, now - 30 * MIN);
        bare.finished_at = Some(now - 29 * MIN);
        records.push(JobRecord {
            job: bare,
            attempts: Vec::new(),
        });
        store.import(&records).expect("import");
        let mut raw = stores.raw();
        assert_eq!(rolled_up(&mut raw, "q3"), 1, "n1, at once");

        // The first read rolls the mark to 5 minutes ago: a1 (its attempt ended 10
        // minutes ago) moves into the rollup, a2 (2 minutes ago) stays located.
        assert_eq!(completed_everywhere(&mut *store, "q1"), (2, 3));
        let mark = raw.number("SELECT jobs_until FROM stats_rolled");
        assert!(mark > now - 10 * MIN && mark <= now, "rolled up to {mark}");
        assert_eq!(rolled_up(&mut raw, "q1"), 1, "a1");
        assert_eq!(completed_everywhere(&mut *store, "q1"), (2, 3), "again");

        // Retrying takes a rolled-up job (a1) and a located one (a2) out.
        let retried = store
            .retry(Some(&["a1".to_owned(), "a2".to_owned()]), &[])
            .expect("retry");
        assert_eq!(retried.len(), 2);
        assert_eq!(rolled_up(&mut raw, "q1"), 0);
        assert_eq!(completed_everywhere(&mut *store, "q1"), (0, 1));
        let pending = jobs(&store.metrics().expect("metrics"), "q1", "pending");
        assert_eq!(pending, 3, "r1, a1, a2");

        // Workers finish them: each is located by its new attempt.
        for _ in 0..3 {
            let run = claim(&mut *store, "w", LONG_LEASE).expect("a q1 job");
            assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
        }
        assert_eq!(completed_everywhere(&mut *store, "q1"), (3, 4));
        assert_eq!(rolled_up(&mut raw, "q1"), 0);

        // Cleaning removes located and rolled-up jobs alike; dead and cancelled
        // jobs are not completed ones.
        let cleaned = store
            .clean(&CleanRequest {
                states: vec![JobState::Completed],
                older_than: None,
                limit: None,
            })
            .expect("clean");
        assert_eq!(cleaned.jobs, 4);
        assert_eq!(completed_everywhere(&mut *store, "q1"), (0, 0));
        assert_eq!(rolled_up(&mut raw, "q3"), 0);
        let after = store.metrics().expect("metrics");
        assert_eq!(jobs(&after, "q2", "dead"), 1);
        assert_eq!(jobs(&after, "q2", "cancelled"), 1);

        // An import after the roll: a job whose attempt is older than the mark goes
        // into the rollup, a recent one is located, a bare one is rolled up.
        let old = finished(
            job("o1", "q4", JobState::Completed, now - 60 * MIN),
            vec![attempt(1, now - 60 * MIN, 10, AttemptOutcome::Succeeded)],
        );
        let recent = finished(
            job("o2", "q4", JobState::Completed, now - MIN),
            vec![attempt(1, now - MIN, 10, AttemptOutcome::Succeeded)],
        );
        let mut bare = job("o3", "q4", JobState::Completed, now - MIN);
        bare.finished_at = Some(now - MIN);
        let bare = JobRecord {
            job: bare,
            attempts: Vec::new(),
        };
        store.import(&[old, recent, bare]).expect("import");
        assert_eq!(rolled_up(&mut raw, "q4"), 2, "o1 and o3");
        assert_eq!(completed_everywhere(&mut *store, "q4"), (3, 3));
        check_counts_reopened(stores, 3);
    }
);

/// A new connection counts the same completed jobs.
fn check_counts_reopened(stores: &crate::TestStore, completed: i64) {
    let counts = stores.open().counts().expect("counts");
    assert_eq!(counts.get(JobState::Completed), completed);
}
