//! Users controlling jobs: `cancel` (all or nothing; at once for waiting jobs, through
//! the worker for running ones), `retry` of finished jobs and `clean` of old ones.

use std::time::Duration;

use queuectl::backoff::Backoff;
use queuectl::error::StoreError;
use queuectl::job::{AttemptOutcome, Cancel, JobState, Outcome};
use queuectl::store::{CleanRequest, Exchange, ProcessKey, Store, WorkerInfo, WorkerState};

use crate::{
    LONG_LEASE, claim, conformance_test, enqueue, exchange, failed, job, lease_of, no_backoff, ran,
    report, succeeded,
};

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Runs the next claimable job to success.
fn complete_next(store: &mut dyn Store) -> String {
    let claimed = claim(store, "w1", LONG_LEASE).expect("a job to claim");
    assert!(report(store, &[succeeded(&claimed)]).rejected.is_empty());
    claimed.id
}

/// Runs the next claimable job to a failure its retry limit (0) makes final.
fn kill_next(store: &mut dyn Store) -> String {
    let claimed = claim(store, "w1", LONG_LEASE).expect("a job to claim");
    assert_eq!(claimed.max_retries, 0, "enqueue it with the setting at 0");
    assert!(
        report(store, &[failed(&claimed, &no_backoff())])
            .rejected
            .is_empty()
    );
    claimed.id
}

/// The cancel requests a worker round trip reads, as leases.
fn cancels_seen(store: &mut dyn Store) -> Vec<(String, i64)> {
    let reply = exchange(
        store,
        &Exchange {
            check_cancels: true,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    );
    reply
        .cancel
        .into_iter()
        .map(|l| (l.job_id, l.token))
        .collect()
}

fn states(store: &mut dyn Store) -> Vec<(String, JobState)> {
    let jobs = store.list(None, None).expect("list");
    jobs.into_iter().map(|j| (j.id, j.state)).collect()
}

conformance_test!(
    cancel_refuses_every_bad_id_and_then_changes_nothing,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["done", "waiting"]);
        complete_next(&mut *store);
        let before = states(&mut *store);

        let refused = store
            .cancel(&ids(&["waiting", "done", "nope"]))
            .expect_err("a finished and an unknown id");
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
        let message = refused.to_string();
        assert!(
            message.contains("'done'") && message.contains("'nope'"),
            "{message}"
        );
        assert!(!message.contains("'waiting'"), "{message}");
        assert_eq!(states(&mut *store), before);
    }
);

conformance_test!(cancelling_a_waiting_job_finishes_it_at_once, |stores| {
    let mut store = stores.open();
    enqueue(&mut *store, &["backing-off", "pending"]);
    let first = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
    let hour = Backoff::new(3600.0, Duration::from_secs(3600));
    report(&mut *store, &[failed(&first, &hour)]);
    assert_eq!(job(&mut *store, "backing-off").state, JobState::Failed);

    let plan = store
        .cancel(&ids(&["backing-off", "pending"]))
        .expect("cancel");
    assert!(
        plan.iter().all(|(_, c)| matches!(c, Cancel::Now(_))),
        "{plan:?}"
    );
    for id in ["backing-off", "pending"] {
        let cancelled = job(&mut *store, id);
        assert_eq!(cancelled.state, JobState::Cancelled, "{id}");
        assert!(cancelled.finished_at.is_some(), "{id}");
        assert!(!cancelled.cancel_requested, "{id}");
    }
    assert_eq!(job(&mut *store, "backing-off").attempts, 1);
    assert!(claim(&mut *store, "w1", LONG_LEASE).is_none());
    let listed: Vec<String> = store
        .list(Some(JobState::Cancelled), None)
        .expect("list")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, ["backing-off", "pending"]);
    let counts = store.counts().expect("counts");
    assert_eq!(
        (
            counts.get(JobState::Cancelled),
            counts.get(JobState::Completed)
        ),
        (2, 0)
    );
});

conformance_test!(
    a_running_job_is_cancelled_through_the_worker_that_runs_it,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["running", "other"]);
        let running = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let other = claim(&mut *store, "w2", LONG_LEASE).expect("a job to claim");
        assert!(cancels_seen(&mut *stores.open()).is_empty());

        let plan = store.cancel(&ids(&["running"])).expect("cancel");
        assert_eq!(
            plan,
            [(
                "running".to_owned(),
                Cancel::Requested {
                    lease_token: running.lease_token
                }
            )]
        );
        let marked = job(&mut *store, "running");
        assert_eq!(
            (marked.state, marked.cancel_requested),
            (JobState::Processing, true)
        );
        let recovery: Vec<(String, bool)> = store
            .running_jobs()
            .expect("running jobs")
            .into_iter()
            .map(|r| (r.lease.job_id, r.cancel_requested))
            .collect();
        assert!(
            recovery.contains(&("running".to_owned(), true)),
            "{recovery:?}"
        );
        assert!(
            recovery.contains(&("other".to_owned(), false)),
            "{recovery:?}"
        );

        // Every worker round trip that asks sees it, from any connection; one that only
        // reads (no renewals, no claims) too.
        let expected = vec![("running".to_owned(), running.lease_token)];
        assert_eq!(cancels_seen(&mut *stores.open()), expected);
        let process = ProcessKey {
            host: "h".into(),
            pid: 1,
        };
        let read_only = Exchange {
            process: Some(&process),
            check_cancels: true,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        };
        assert!(!read_only.writes());
        assert_eq!(
            exchange(&mut *store, &read_only).cancel,
            [lease_of(&running)]
        );
        let not_asked = exchange(
            &mut *store,
            &Exchange {
                renew: &[lease_of(&other)],
                lease_timeout: LONG_LEASE,
                ..Exchange::default()
            },
        );
        assert!(not_asked.cancel.is_empty());

        // The worker kills it and reports the attempt cancelled.
        let stopped = ran(&running, Outcome::Cancelled, &no_backoff());
        assert!(report(&mut *store, &[stopped]).rejected.is_empty());
        let ended = job(&mut *store, "running");
        assert_eq!(
            (ended.state, ended.cancel_requested),
            (JobState::Cancelled, false)
        );
        let history = store.attempts("running").expect("attempts");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].outcome, AttemptOutcome::Cancelled);
        assert!(cancels_seen(&mut *store).is_empty());
        assert!(claim(&mut *store, "w1", LONG_LEASE).is_none());
    }
);

conformance_test!(
    retry_starts_finished_jobs_over_and_refuses_unfinished_ones,
    |stores| {
        let mut store = stores.open();
        store.set_setting("max-retries", "0").expect("set");
        enqueue(&mut *store, &["completed", "dead", "cancelled", "waiting"]);
        complete_next(&mut *store);
        kill_next(&mut *store);
        store.cancel(&ids(&["cancelled"])).expect("cancel");
        let before = states(&mut *store);

        let refused = store.retry(Some(&ids(&["completed", "waiting"])), &[]);
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        let unknown = store.retry(Some(&ids(&["completed", "nope"])), &[]);
        assert!(
            matches!(unknown, Err(StoreError::NotFound(_))),
            "{unknown:?}"
        );
        assert_eq!(states(&mut *store), before);

        let retried = store
            .retry(Some(&ids(&["dead", "completed", "cancelled"])), &[])
            .expect("retry");
        assert_eq!(retried, ["dead", "completed", "cancelled"]);
        for id in ["completed", "dead", "cancelled"] {
            let again = job(&mut *store, id);
            assert_eq!(
                (again.state, again.attempts),
                (JobState::Pending, 0),
                "{id}"
            );
        }
        // The history stays.
        assert_eq!(store.attempts("completed").expect("attempts").len(), 1);
        assert_eq!(store.attempts("dead").expect("attempts").len(), 1);
        let mut claimed: Vec<String> = std::iter::from_fn(|| claim(&mut *store, "w1", LONG_LEASE))
            .map(|j| j.id)
            .collect();
        claimed.sort();
        assert_eq!(claimed, ["cancelled", "completed", "dead", "waiting"]);
    }
);

conformance_test!(
    retry_by_state_takes_every_job_in_those_states_in_creation_order,
    |stores| {
        let mut store = stores.open();
        store.set_setting("max-retries", "0").expect("set");
        enqueue(
            &mut *store,
            &["dead-1", "done", "dead-2", "cancelled", "waiting"],
        );
        kill_next(&mut *store);
        complete_next(&mut *store);
        kill_next(&mut *store);
        store.cancel(&ids(&["cancelled"])).expect("cancel");

        let dead = store.retry(None, &[JobState::Dead]).expect("retry dead");
        assert_eq!(dead, ["dead-1", "dead-2"]);
        assert_eq!(job(&mut *store, "done").state, JobState::Completed);
        let rest = store.retry(None, &[]).expect("retry every finished job");
        assert_eq!(rest, ["done", "cancelled"]);
        assert!(store.retry(None, &[]).expect("nothing left").is_empty());
        assert!(
            states(&mut *store)
                .iter()
                .all(|(_, state)| *state == JobState::Pending)
        );
    }
);

/// Moves the finish (and last update) of jobs `ids` two hours back.
fn age_by_two_hours(stores: &crate::TestStore, ids: &[&str]) {
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    stores.raw().run(&format!(
        "UPDATE jobs SET finished_at = finished_at - 7200000, updated_at = updated_at - 7200000 \
         WHERE id IN ({list})"
    ));
}

fn clean(store: &mut dyn Store, states: &[JobState], older_than: Option<Duration>) -> u64 {
    let request = CleanRequest {
        states: states.to_vec(),
        older_than,
        limit: None,
    };
    store.clean(&request).expect("clean").jobs
}

conformance_test!(
    clean_deletes_old_finished_jobs_with_their_history_and_nothing_unfinished,
    |stores| {
        let mut store = stores.open();
        store.set_setting("max-retries", "1").expect("set");
        enqueue(
            &mut *store,
            &["old-done", "new-done", "old-failed", "running"],
        );
        complete_next(&mut *store);
        complete_next(&mut *store);
        let failing = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let hour = Backoff::new(3600.0, Duration::from_secs(3600));
        report(&mut *store, &[failed(&failing, &hour)]);
        claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        age_by_two_hours(stores, &["old-done", "old-failed", "running"]);

        let hour = Some(Duration::from_secs(3600));
        assert_eq!(clean(&mut *store, &[], hour), 1);
        let left: Vec<String> = states(&mut *store).into_iter().map(|(id, _)| id).collect();
        assert_eq!(left, ["new-done", "old-failed", "running"]);
        assert!(store.attempts("old-done").expect("attempts").is_empty());
        let mut raw = stores.raw();
        assert_eq!(
            raw.number("SELECT count(*) FROM attempts WHERE job_id = 'old-done'"),
            0
        );
        assert_eq!(raw.number("SELECT count(*) FROM attempts"), 2);

        assert_eq!(clean(&mut *store, &[JobState::Dead], None), 0);
        assert_eq!(clean(&mut *store, &[JobState::Completed], None), 1);
        let left: Vec<String> = states(&mut *store).into_iter().map(|(id, _)| id).collect();
        assert_eq!(left, ["old-failed", "running"]);
        assert_eq!(clean(&mut *store, &[], None), 0);

        let refused = store.clean(&CleanRequest {
            states: vec![JobState::Failed],
            older_than: None,
            limit: None,
        });
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        assert_eq!(states(&mut *store).len(), 2);
    }
);

conformance_test!(
    clean_takes_the_oldest_jobs_first_up_to_its_limit,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["j1", "j2", "j3", "j4", "j5"]);
        for _ in 0..5 {
            complete_next(&mut *store);
        }
        let batch = CleanRequest {
            states: vec![],
            older_than: None,
            limit: Some(2),
        };
        assert_eq!(store.clean(&batch).expect("clean").jobs, 2);
        let left: Vec<String> = states(&mut *store).into_iter().map(|(id, _)| id).collect();
        assert_eq!(left, ["j3", "j4", "j5"]);
        assert_eq!(store.clean(&batch).expect("clean").jobs, 2);
        assert_eq!(store.clean(&batch).expect("clean").jobs, 1);
        assert_eq!(store.clean(&batch).expect("clean").jobs, 0);
    }
);

conformance_test!(
    clean_deletes_worker_rows_that_ended_over_a_day_ago,
    |stores| {
        let mut store = stores.open();
        let worker = |id: &str| WorkerInfo {
            id: id.to_owned(),
            host: "h".to_owned(),
            pid: 1,
            pid_start: 1,
        };
        store
            .register_workers(&[
                worker("ended-long-ago"),
                worker("ended-now"),
                worker("live"),
            ])
            .expect("register");
        store
            .end_workers(&ids(&["ended-long-ago"]), WorkerState::Lost)
            .expect("end");
        store
            .end_workers(&ids(&["ended-now"]), WorkerState::Stopped)
            .expect("end");
        stores.raw().run(
        "UPDATE workers SET ended_at = ended_at - 90000000, started_at = started_at - 90000000, \
         heartbeat_at = heartbeat_at - 90000000 WHERE id = 'ended-long-ago'",
    );
        let request = CleanRequest {
            states: vec![],
            older_than: None,
            limit: None,
        };
        assert_eq!(store.clean(&request).expect("clean").workers, 1);
        let left: Vec<String> = store
            .workers(true)
            .expect("workers")
            .into_iter()
            .map(|w| w.info.id)
            .collect();
        assert_eq!(left, ["ended-now", "live"]);
    }
);
