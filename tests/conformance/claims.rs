//! Claiming: which job a worker gets, and that no job is ever handed out twice.

use std::collections::BTreeSet;
use std::time::Duration;

use queuectl::backoff::Backoff;
use queuectl::job::JobState;
use queuectl::store::{Exchange, Finished};

use crate::{
    LONG_LEASE, TestStore, claim, conformance_test, enqueue, exchange, failed, job, report,
    succeeded, wait_until,
};

conformance_test!(jobs_are_claimed_in_enqueue_order, |stores| {
    let mut store = stores.open();
    // Ids that sort differently from their enqueue order, in two batches.
    enqueue(&mut *store, &["c-first", "a-second", "b-third"]);
    enqueue(&mut *store, &["0-fourth"]);
    let claimed: Vec<String> = std::iter::from_fn(|| claim(&mut *store, "w1", LONG_LEASE))
        .map(|job| job.id)
        .collect();
    assert_eq!(claimed, ["c-first", "a-second", "b-third", "0-fourth"]);
});

conformance_test!(
    one_exchange_claims_the_oldest_jobs_for_its_entries_in_order,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["c-first", "a-second", "b-third", "0-fourth"]);
        let workers = ["w1".to_owned(), "w2".to_owned(), "w1".to_owned()];
        let reply = exchange(
            &mut *store,
            &Exchange {
                claim_for: &workers,
                lease_timeout: LONG_LEASE,
                ..Exchange::default()
            },
        );
        let claimed: Vec<(&str, &str)> = reply
            .claimed
            .iter()
            .map(|(worker, job)| (worker.as_str(), job.id.as_str()))
            .collect();
        assert_eq!(
            claimed,
            [("w1", "c-first"), ("w2", "a-second"), ("w1", "b-third")]
        );
        for (worker, job) in &reply.claimed {
            assert_eq!(job.state, JobState::Processing);
            assert_eq!(job.worker_id.as_deref(), Some(worker.as_str()));
        }
    }
);

conformance_test!(
    a_failed_job_is_not_claimable_before_its_next_run_at,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["retry-in-a-minute", "retry-soon"]);
        let minute_job = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let soon_job = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");

        // 60^1 seconds for the first retry.
        let minute = Backoff::new(60.0, Duration::from_secs(3600));
        let reply = report(&mut *store, &[failed(&minute_job, &minute)]);
        assert!(reply.rejected.is_empty());
        let waiting = job(&mut *store, "retry-in-a-minute");
        assert_eq!((waiting.state, waiting.attempts), (JobState::Failed, 1));
        let reply = exchange(
            &mut *store,
            &Exchange {
                claim_for: &["w1".to_owned()],
                lease_timeout: LONG_LEASE,
                ..Exchange::default()
            },
        );
        assert!(reply.claimed.is_empty(), "claimed {:?}", reply.claimed);
        let due_in = reply
            .next_due_in
            .expect("the store says when the next job is due");
        assert!(
            (Duration::from_secs(50)..=Duration::from_secs(60)).contains(&due_in),
            "next job due in {due_in:?}"
        );

        // A 100 ms backoff (the cap): the job comes back once it is over, not before.
        let short = Backoff::new(1.0, Duration::from_millis(100));
        report(&mut *store, &[failed(&soon_job, &short)]);
        let mut reclaimed = None;
        wait_until(
            "the job to be claimable again",
            Duration::from_secs(5),
            || {
                reclaimed = claim(&mut *store, "w2", LONG_LEASE);
                reclaimed.is_some()
            },
        );
        let reclaimed = reclaimed.expect("checked by wait_until");
        assert_eq!(reclaimed.id, "retry-soon");
        let started_at = reclaimed.started_at.expect("a claimed job has started");
        assert!(
            started_at >= reclaimed.next_run_at,
            "claimed at {started_at}, before its next_run_at {}",
            reclaimed.next_run_at
        );
        assert_eq!(
            job(&mut *store, "retry-in-a-minute").state,
            JobState::Failed
        );
    }
);

/// How many jobs the concurrent claim test hands out, and to how many connections.
const JOBS: usize = 400;
const CONNECTIONS: usize = 8;

conformance_test!(
    eight_connections_claiming_at_once_get_each_job_exactly_once,
    |stores| {
        let ids: Vec<String> = (0..JOBS).map(|i| format!("job-{i:03}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        enqueue(&mut *stores.open(), &id_refs);

        let per_connection: Vec<Vec<String>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..CONNECTIONS)
                .map(|n| scope.spawn(move || claim_until_empty(stores, &format!("w{n}"))))
                .collect();
            threads
                .into_iter()
                // A thread's own panic message says what went wrong: pass it on.
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });

        let all: Vec<&String> = per_connection.iter().flatten().collect();
        let distinct: BTreeSet<&String> = all.iter().copied().collect();
        assert_eq!(all.len(), JOBS, "claims in all, duplicates included");
        assert_eq!(distinct, ids.iter().collect(), "every job claimed once");
        let counts = stores.open().counts().expect("counts");
        assert_eq!(counts.get(JobState::Completed), JOBS as i64);
    }
);

/// Plays one worker process with two slots on a connection of its own: each round
/// trip reports the previous runs as succeeded and claims two more, until the queue
/// is empty. Returns the ids it claimed.
fn claim_until_empty(stores: &TestStore, worker: &str) -> Vec<String> {
    let mut store = stores.open();
    let slots = [worker.to_owned(), worker.to_owned()];
    let mut running: Vec<Finished> = Vec::new();
    let mut claimed = Vec::new();
    loop {
        let reply = exchange(
            &mut *store,
            &Exchange {
                finished: &running,
                claim_for: &slots,
                lease_timeout: LONG_LEASE,
                ..Exchange::default()
            },
        );
        assert!(reply.rejected.is_empty(), "rejected {:?}", reply.rejected);
        if reply.claimed.is_empty() {
            return claimed;
        }
        running = reply
            .claimed
            .iter()
            .map(|(_, job)| succeeded(job))
            .collect();
        claimed.extend(reply.claimed.into_iter().map(|(_, job)| job.id));
    }
}

conformance_test!(jobs_in_flight_are_the_running_and_the_retrying, |stores| {
    let mut store = stores.open();
    let in_flight =
        |store: &mut dyn queuectl::store::Store| store.jobs_in_flight().expect("jobs in flight");
    assert!(!in_flight(&mut *store), "an empty store");
    enqueue(&mut *store, &["a"]);
    assert!(!in_flight(&mut *store), "a pending job is not in flight");
    let first = claim(&mut *store, "w1", LONG_LEASE).expect("claimed");
    assert!(in_flight(&mut *store), "a running job is");
    report(&mut *store, &[failed(&first, &crate::no_backoff())]);
    assert_eq!(job(&mut *store, "a").state, JobState::Failed);
    assert!(in_flight(&mut *store), "a job waiting for its retry is");
    let second = claim(&mut *store, "w1", LONG_LEASE).expect("claimed again");
    report(&mut *store, &[succeeded(&second)]);
    assert_eq!(job(&mut *store, "a").state, JobState::Completed);
    assert!(!in_flight(&mut *store), "a completed job is not");
});

conformance_test!(
    a_job_given_back_unstarted_keeps_its_place_in_line,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["first"]);
        let ahead = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        // Jobs that become ready after `first` was claimed; then the clock moves on,
        // so a give-back stamped "ready now" would sort after them.
        enqueue(&mut *store, &["second", "third"]);
        let moved_on = std::time::Instant::now() + Duration::from_millis(20);
        wait_until("the clock to move on", Duration::from_secs(5), || {
            std::time::Instant::now() >= moved_on
        });
        let release = crate::finished(
            &ahead,
            queuectl::job::AttemptOutcome::Released,
            queuectl::job::after_release(&ahead),
        );
        assert!(report(&mut *store, &[release]).rejected.is_empty());
        let back = job(&mut *store, "first");
        assert_eq!(back.state, JobState::Pending);
        assert_eq!(
            back.next_run_at, ahead.next_run_at,
            "ready since when it was first ready"
        );
        let order: Vec<String> = std::iter::from_fn(|| claim(&mut *store, "w2", LONG_LEASE))
            .map(|job| job.id)
            .collect();
        assert_eq!(order, ["first", "second", "third"]);
    }
);

// `Exchange::claim_if_freed` (DECISIONS §26) lets a store skip the claim of a round
// trip whose finished runs freed nothing; a run that made room in a limited queue,
// or failed and may run again now, has freed something, and is claimed at once.
conformance_test!(
    a_claim_if_freed_still_claims_what_the_finished_runs_freed,
    |stores| {
        let mut store = stores.open();
        let mut limited: Vec<_> = ["l1", "l2"].iter().map(|id| crate::new_job(id)).collect();
        for job in &mut limited {
            job.queue = "limited".into();
        }
        store.enqueue(&limited).expect("enqueue");
        store
            .set_queue(
                "limited",
                queuectl::store::QueueChange::Concurrency(Some(1)),
            )
            .expect("limit");
        let first = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        assert!(
            claim(&mut *store, "w1", LONG_LEASE).is_none(),
            "the limit holds"
        );
        let workers = ["w1".to_owned()];
        let reply = exchange(
            &mut *store,
            &Exchange {
                finished: &[succeeded(&first)],
                claim_for: &workers,
                lease_timeout: LONG_LEASE,
                claim_if_freed: true,
                ..Exchange::default()
            },
        );
        let ids: Vec<&str> = reply.claimed.iter().map(|(_, j)| j.id.as_str()).collect();
        assert_eq!(ids, ["l2"], "the room the first run left");
        assert!(!reply.claim_skipped);

        // A failed run with no backoff is claimable again at once.
        let second = reply.claimed[0].1.clone();
        let retry = failed(&second, &crate::no_backoff());
        let reply = exchange(
            &mut *store,
            &Exchange {
                finished: &[retry],
                claim_for: &workers,
                lease_timeout: LONG_LEASE,
                claim_if_freed: true,
                ..Exchange::default()
            },
        );
        let ids: Vec<&str> = reply.claimed.iter().map(|(_, j)| j.id.as_str()).collect();
        assert_eq!(ids, ["l2"], "the failed job, again");
    }
);
