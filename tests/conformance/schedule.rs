//! Scheduling (issue 11): run order by priority, jobs that wait for their time or
//! for other jobs, queues (served, paused, limited) and unique keys.

use std::time::Duration;

use queuectl::job::options::Start;
use queuectl::job::{JobState, NewJob};
use queuectl::store::{Exchange, QueueChange, Store};

use crate::{
    LONG_LEASE, claim, conformance_test, exchange, failed, job, new_job, report, succeeded,
};

fn with(id: &str, change: impl FnOnce(&mut NewJob)) -> NewJob {
    let mut job = new_job(id);
    change(&mut job);
    job
}

fn claim_all(store: &mut dyn Store) -> Vec<String> {
    std::iter::from_fn(|| claim(store, "w1", LONG_LEASE))
        .map(|job| job.id)
        .collect()
}

conformance_test!(ready_jobs_run_by_priority_then_fifo, |stores| {
    let mut store = stores.open();
    let jobs = [
        with("low", |j| j.priority = -5),
        with("a0", |_| {}),
        with("high", |j| j.priority = 1000),
        with("b0", |_| {}),
        with("high2", |j| j.priority = 1000),
    ];
    store.enqueue(&jobs).expect("enqueue");
    assert_eq!(claim_all(&mut *store), ["high", "high2", "a0", "b0", "low"]);
});

conformance_test!(
    a_delayed_job_waits_for_its_time_whatever_its_priority,
    |stores| {
        let mut store = stores.open();
        let jobs = [
            with("later", |j| {
                j.priority = 1000;
                j.start = Start::After(Duration::from_millis(400));
            }),
            with("now", |_| {}),
        ];
        let enqueued = store.enqueue(&jobs).expect("enqueue");
        let later = job(&mut *store, "later");
        assert_eq!(later.run_at, Some(later.next_run_at));
        assert!(later.next_run_at >= enqueued.created_at + 400);
        assert_eq!(claim_all(&mut *store), ["now"]);
        crate::wait_until("the delayed job is due", Duration::from_secs(10), || {
            claim(&mut *store, "w1", LONG_LEASE).is_some_and(|j| j.id == "later")
        });
    }
);

conformance_test!(workers_claim_only_from_the_queues_they_serve, |stores| {
    let mut store = stores.open();
    let jobs = [
        with("in-a", |j| j.queue = "a".into()),
        with("in-b", |j| j.queue = "b".into()),
    ];
    store.enqueue(&jobs).expect("enqueue");
    let only_b = ["b".to_owned()];
    let reply = exchange(
        &mut *store,
        &Exchange {
            claim_for: &["w1".to_owned(), "w1".to_owned()],
            lease_timeout: LONG_LEASE,
            queues: Some(&only_b),
            ..Exchange::default()
        },
    );
    let ids: Vec<&str> = reply.claimed.iter().map(|(_, j)| j.id.as_str()).collect();
    assert_eq!(ids, ["in-b"]);
});

conformance_test!(paused_and_full_queues_start_nothing, |stores| {
    let mut store = stores.open();
    let jobs = [
        with("p1", |j| j.queue = "paused".into()),
        with("l1", |j| j.queue = "limited".into()),
        with("l2", |j| j.queue = "limited".into()),
        with("free", |_| {}),
    ];
    store.enqueue(&jobs).expect("enqueue");
    store
        .set_queue("paused", QueueChange::Pause)
        .expect("pause");
    store
        .set_queue("limited", QueueChange::Concurrency(Some(1)))
        .expect("limit");
    // One exchange asking for four jobs gets one of the limited queue's.
    let workers = vec!["w1".to_owned(); 4];
    let reply = exchange(
        &mut *store,
        &Exchange {
            claim_for: &workers,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    );
    let mut ids: Vec<&str> = reply.claimed.iter().map(|(_, j)| j.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["free", "l1"]);
    let queues = store.queues().expect("queues");
    let limited = queues.iter().find(|q| q.name == "limited").expect("listed");
    assert_eq!(
        (
            limited.counts.get(JobState::Processing),
            limited.concurrency
        ),
        (1, Some(1))
    );
    assert!(queues.iter().any(|q| q.name == "paused" && q.paused));
    // The limited job finishing makes room; resuming frees the paused one.
    let l1 = job(&mut *store, "l1");
    report(&mut *store, &[succeeded(&l1)]);
    store
        .set_queue("paused", QueueChange::Resume)
        .expect("resume");
    let mut rest = claim_all(&mut *store);
    rest.sort_unstable();
    assert_eq!(rest, ["l2", "p1"]);
});

conformance_test!(
    a_chain_runs_in_order_and_a_dead_link_cancels_the_rest,
    |stores| {
        let mut store = stores.open();
        let jobs = [
            with("a", |j| j.max_retries = Some(0)),
            with("b", |j| j.after = vec!["a".into()]),
            with("c", |j| j.after = vec!["b".into()]),
            with("x", |_| {}),
            with("y", |j| j.after = vec!["x".into()]),
        ];
        store.enqueue(&jobs).expect("enqueue");
        assert_eq!(job(&mut *store, "b").after, ["a"]);
        assert_eq!(claim_all(&mut *store), ["a", "x"]);
        let x = job(&mut *store, "x");
        report(&mut *store, &[succeeded(&x)]);
        assert_eq!(claim_all(&mut *store), ["y"]);
        let a = job(&mut *store, "a");
        report(&mut *store, &[failed(&a, &crate::no_backoff())]);
        assert_eq!(job(&mut *store, "a").state, JobState::Dead);
        for id in ["b", "c"] {
            let cancelled = job(&mut *store, id);
            assert_eq!(cancelled.state, JobState::Cancelled, "{id}");
            let error = cancelled.last_error.unwrap_or_default();
            assert!(error.contains("'a'"), "{id}: {error}");
        }
    }
);

conformance_test!(unknown_after_ids_refuse_the_whole_batch, |stores| {
    let mut store = stores.open();
    let jobs = [
        with("ok", |_| {}),
        with("bad", |j| j.after = vec!["nope".into()]),
    ];
    let refused = store.enqueue(&jobs);
    assert!(
        matches!(refused, Err(queuectl::error::StoreError::UnknownAfter(ref ids)) if ids == &["nope"]),
        "{refused:?}"
    );
    assert!(store.job("ok").expect("read").is_none());
});

conformance_test!(a_unique_key_holds_while_its_job_is_unfinished, |stores| {
    let mut store = stores.open();
    let keyed = |id: &str| with(id, |j| j.unique_key = Some("k".into()));
    let first = store.enqueue(&[keyed("k1"), keyed("k2")]).expect("enqueue");
    assert_eq!(first.existing, [None, Some("k1".to_owned())]);
    assert!(store.job("k2").expect("read").is_none());
    let k1 = claim(&mut *store, "w1", LONG_LEASE).expect("claimed");
    let again = store.enqueue(&[keyed("k3")]).expect("enqueue");
    assert_eq!(again.existing, [Some("k1".to_owned())]);
    report(&mut *store, &[succeeded(&k1)]);
    let after = store.enqueue(&[keyed("k4")]).expect("enqueue");
    assert_eq!(after.existing, [None]);
});

conformance_test!(
    ready_jobs_are_claimed_past_many_delayed_ones_of_higher_priority,
    |stores| {
        // Many jobs waiting for later, at a higher priority than the ready one, do not
        // stand in its way.
        let mut store = stores.open();
        let waiting: Vec<NewJob> = (0..2000)
            .map(|i| {
                with(&format!("later-{i}"), |j| {
                    j.priority = 10;
                    j.start = Start::After(Duration::from_secs(3600));
                })
            })
            .collect();
        store.enqueue(&waiting).expect("enqueue");
        store.enqueue(&[new_job("ready")]).expect("enqueue");
        assert_eq!(claim_all(&mut *store), ["ready"]);
        let counts = store.counts().expect("counts");
        assert_eq!(counts.get(JobState::Pending), 2000);
    }
);

conformance_test!(
    a_batch_of_mixed_priorities_keeps_its_input_order_and_first_twin,
    |stores| {
        // PostgreSQL inserts such a batch in run order (crate::store::layout): the
        // jobs still list in the order given, run by priority then that order, and
        // of two jobs with one unique key the first given wins, whatever their
        // priorities, also against a holder already in the store.
        let mut store = stores.open();
        store
            .enqueue(&[with("held", |j| j.unique_key = Some("h".into()))])
            .expect("enqueue");
        let jobs = [
            with("k-low", |j| j.unique_key = Some("k".into())),
            with("mid", |j| j.priority = 5),
            with("k-high", |j| {
                j.priority = 9;
                j.unique_key = Some("k".into());
            }),
            with("h-high", |j| {
                j.priority = 9;
                j.unique_key = Some("h".into());
            }),
            with("plain", |_| {}),
            with("h-low", |j| j.unique_key = Some("h".into())),
        ];
        let enqueued = store.enqueue(&jobs).expect("enqueue");
        assert_eq!(
            enqueued.existing,
            [
                None,
                None,
                Some("k-low".to_owned()),
                Some("held".to_owned()),
                None,
                Some("held".to_owned())
            ]
        );
        let listed: Vec<String> = store
            .list(None, None)
            .expect("list")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ["held", "k-low", "mid", "plain"]);
        assert_eq!(claim_all(&mut *store), ["mid", "held", "k-low", "plain"]);
    }
);
