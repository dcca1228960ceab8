//! The dead letter queue: `dlq retry` puts dead jobs back, all or nothing.

use queuectl::error::StoreError;
use queuectl::job::{Job, JobState, NewJob};
use queuectl::store::{Exchange, Store};

use crate::{LONG_LEASE, conformance_test, enqueue, exchange, failed, job, no_backoff, report};

/// Enqueues `ids` with no retries and fails each one once: they end up dead.
fn make_dead(store: &mut dyn Store, ids: &[&str]) {
    let jobs: Vec<NewJob> = ids
        .iter()
        .map(|id| NewJob {
            max_retries: Some(0),
            ..crate::new_job(id)
        })
        .collect();
    store.enqueue(&jobs).expect("enqueue");
    let slots = vec!["w1".to_owned(); ids.len()];
    let reply = exchange(
        store,
        &Exchange {
            claim_for: &slots,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    );
    let runs: Vec<_> = reply
        .claimed
        .iter()
        .map(|(_, job)| failed(job, &no_backoff()))
        .collect();
    assert_eq!(runs.len(), ids.len(), "claimed every new job");
    assert!(report(store, &runs).rejected.is_empty());
    for id in ids {
        assert_eq!(job(store, id).state, JobState::Dead);
    }
}

fn all_jobs(store: &mut dyn Store) -> Vec<Job> {
    store.list(None, None).expect("list")
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| id.to_string()).collect()
}

conformance_test!(
    retrying_dead_jobs_with_one_unknown_or_live_id_changes_nothing,
    |stores| {
        let mut store = stores.open();
        make_dead(&mut *store, &["dead-1", "dead-2"]);
        enqueue(&mut *store, &["pending"]);
        let before = all_jobs(&mut *store);

        let unknown = store.retry_dead(Some(&ids(&["dead-1", "nope", "dead-2"])));
        assert!(
            matches!(unknown, Err(StoreError::NotFound(ref id)) if id == "nope"),
            "{unknown:?}"
        );
        assert_eq!(all_jobs(&mut *store), before);

        let live = store.retry_dead(Some(&ids(&["dead-1", "pending"])));
        assert!(matches!(live, Err(StoreError::Conflict(_))), "{live:?}");
        assert_eq!(all_jobs(&mut *store), before);
    }
);

conformance_test!(
    retrying_dead_jobs_by_id_makes_them_pending_with_attempts_reset,
    |stores| {
        let mut store = stores.open();
        make_dead(&mut *store, &["dead-1", "dead-2", "dead-3"]);
        let retried = store
            .retry_dead(Some(&ids(&["dead-2", "dead-1"])))
            .expect("retry");
        assert_eq!(retried, ids(&["dead-2", "dead-1"]));
        for id in ["dead-1", "dead-2"] {
            let again = job(&mut *store, id);
            assert_eq!(
                (again.state, again.attempts, again.interruptions),
                (JobState::Pending, 0, 0),
                "{id}"
            );
        }
        assert_eq!(job(&mut *store, "dead-3").state, JobState::Dead);
        let claimed =
            crate::claim(&mut *store, "w1", LONG_LEASE).expect("a retried job is claimable");
        assert!(
            claimed.id == "dead-1" || claimed.id == "dead-2",
            "{}",
            claimed.id
        );
    }
);

conformance_test!(retrying_without_ids_retries_every_dead_job, |stores| {
    let mut store = stores.open();
    // Created in this order, which is not the ids' sort order.
    make_dead(&mut *store, &["z-dead", "a-dead", "m-dead"]);
    enqueue(&mut *store, &["pending"]);

    let retried = store.retry_dead(None).expect("retry");
    assert_eq!(
        retried,
        ids(&["z-dead", "a-dead", "m-dead"]),
        "in creation order"
    );
    assert_eq!(job(&mut *store, "pending").state, JobState::Pending);
    for id in ["z-dead", "a-dead", "m-dead"] {
        let again = job(&mut *store, id);
        assert_eq!(
            (again.state, again.attempts),
            (JobState::Pending, 0),
            "{id}"
        );
    }
    assert_eq!(store.retry_dead(None).expect("retry"), Vec::<String>::new());
});
