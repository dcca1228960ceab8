//! `list`'s orders and ends (`list --sort`, `--last N`, a terminal's page): both
//! stores give the same jobs in the same order.

use queuectl::job::{JobState, NewJob};
use queuectl::store::{JobListing, JobOrder, Store};

use std::time::Duration;

use crate::{LONG_LEASE, claim, conformance_test, new_job, wait_until};

fn ids(store: &mut dyn Store, listing: JobListing) -> Vec<String> {
    store
        .list_jobs(&listing)
        .expect("list")
        .into_iter()
        .map(|j| j.id)
        .collect()
}

conformance_test!(the_last_jobs_come_newest_last_in_any_order, |stores| {
    let mut store = stores.open();
    // Created a..e; priorities 2, 0, 5, 0, 1.
    let jobs: Vec<NewJob> = [("a", 2), ("b", 0), ("c", 5), ("d", 0), ("e", 1)]
        .iter()
        .map(|(id, priority)| NewJob {
            priority: *priority,
            ..new_job(id)
        })
        .collect();
    let created = store.enqueue(&jobs).expect("enqueue").created_at;
    // So that the claim below updates its job at a later millisecond.
    wait_until("the clock to move on", Duration::from_secs(2), || {
        jiff::Timestamp::now().as_millisecond() > created + 1
    });
    let all = JobListing::default();
    assert_eq!(ids(&mut *store, all.clone()), ["a", "b", "c", "d", "e"]);
    let last = |order, n| JobListing {
        order,
        limit: Some(n),
        from_end: true,
        ..JobListing::default()
    };
    assert_eq!(ids(&mut *store, last(JobOrder::Natural, 2)), ["d", "e"]);
    assert_eq!(
        ids(&mut *store, last(JobOrder::Created, 10)),
        ["a", "b", "c", "d", "e"]
    );
    // Ascending, ties in creation order: the highest priority is last.
    assert_eq!(
        ids(
            &mut *store,
            JobListing {
                order: JobOrder::Priority,
                ..JobListing::default()
            }
        ),
        ["b", "d", "e", "a", "c"]
    );
    assert_eq!(ids(&mut *store, last(JobOrder::Priority, 2)), ["a", "c"]);
    assert_eq!(
        ids(
            &mut *store,
            JobListing {
                order: JobOrder::Priority,
                limit: Some(2),
                ..JobListing::default()
            }
        ),
        ["b", "d"]
    );

    // A claimed job changes state and update time: `state` puts it after the
    // pending ones, `updated` last.
    let running = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
    assert_eq!(running.id, "c", "the highest priority runs first");
    let by_state = ids(
        &mut *store,
        JobListing {
            order: JobOrder::State,
            ..JobListing::default()
        },
    );
    assert_eq!(by_state, ["a", "b", "d", "e", "c"]);
    assert_eq!(ids(&mut *store, last(JobOrder::Updated, 1)), ["c"]);

    // By state: waiting jobs keep their run order (priority first), from either end.
    let pending = |limit, from_end| JobListing {
        state: Some(JobState::Pending),
        limit,
        from_end,
        ..JobListing::default()
    };
    assert_eq!(ids(&mut *store, pending(None, false)), ["a", "e", "b", "d"]);
    assert_eq!(ids(&mut *store, pending(Some(3), true)), ["e", "b", "d"]);
    assert_eq!(ids(&mut *store, pending(Some(1), false)), ["a"]);
    let processing = JobListing {
        state: Some(JobState::Processing),
        from_end: true,
        limit: Some(5),
        ..JobListing::default()
    };
    assert_eq!(ids(&mut *store, processing), ["c"]);
});

conformance_test!(waiting_jobs_list_in_one_order_on_every_store, |stores| {
    use queuectl::job::options::Start;
    let mut store = stores.open();
    let job = |id: &str, priority: i64, change: &dyn Fn(&mut NewJob)| {
        let mut job = NewJob {
            priority,
            ..new_job(id)
        };
        change(&mut job);
        job
    };
    let later = |j: &mut NewJob| j.start = Start::After(Duration::from_secs(3600));
    let soon = |j: &mut NewJob| j.start = Start::After(Duration::from_secs(1800));
    let blocked = |j: &mut NewJob| j.after = vec!["gate".into()];
    let ready = |_: &mut NewJob| {};
    // The gate itself is a delayed job, so everything after it stays blocked.
    let jobs = vec![
        job("gate", 0, &later),
        job("b-low", 1, &blocked),
        job("r-low", 1, &ready),
        job("d-late", 9, &later),
        job("b-high", 9, &blocked),
        job("r-high", 9, &ready),
        job("d-soon", 1, &soon),
    ];
    store.enqueue(&jobs).expect("enqueue");
    let pending = |from_end, limit| JobListing {
        state: Some(JobState::Pending),
        limit,
        from_end,
        ..JobListing::default()
    };
    // Ready ones in run order (priority, then age), then those waiting for their
    // time (soonest first), then those waiting for other jobs (enqueue order,
    // whatever their priority).
    let order = [
        "r-high", "r-low", "d-soon", "gate", "d-late", "b-low", "b-high",
    ];
    assert_eq!(ids(&mut *store, pending(false, None)), order);
    assert_eq!(ids(&mut *store, pending(true, Some(3))), order[4..]);
    assert_eq!(ids(&mut *store, pending(false, Some(4))), order[..4]);

    // Blocked behind a running job, with and without a delay of their own.
    let other = stores.another();
    let mut store = other.open();
    let jobs = vec![
        job("gate", 0, &ready),
        job("b1", 1, &blocked),
        job("b2", 9, &|j: &mut NewJob| {
            blocked(j);
            later(j);
        }),
        job("b3", 9, &blocked),
    ];
    store.enqueue(&jobs).expect("enqueue");
    assert_eq!(
        claim(&mut *store, "w1", LONG_LEASE).map(|j| j.id),
        Some("gate".into())
    );
    assert_eq!(ids(&mut *store, pending(false, None)), ["b1", "b2", "b3"]);
    assert_eq!(ids(&mut *store, pending(true, Some(2))), ["b2", "b3"]);
});

conformance_test!(
    dashboard_pages_filter_by_queue_and_skip_from_the_newest,
    |stores| {
        let mut store = stores.open();
        // a0..a5 alternate between queues `q` and `r`.
        let jobs: Vec<NewJob> = (0..6)
            .map(|i| NewJob {
                queue: if i % 2 == 0 { "q" } else { "r" }.into(),
                ..new_job(&format!("a{i}"))
            })
            .collect();
        store.enqueue(&jobs).expect("enqueue");
        let page = |queue: Option<&str>, state, offset| JobListing {
            state,
            queue: queue.map(str::to_owned),
            limit: Some(2),
            offset,
            from_end: true,
            ..JobListing::default()
        };
        assert_eq!(ids(&mut *store, page(None, None, 0)), ["a4", "a5"]);
        assert_eq!(ids(&mut *store, page(None, None, 2)), ["a2", "a3"]);
        assert_eq!(ids(&mut *store, page(Some("q"), None, 0)), ["a2", "a4"]);
        assert_eq!(ids(&mut *store, page(Some("q"), None, 2)), ["a0"]);
        assert_eq!(
            ids(&mut *store, page(Some("r"), Some(JobState::Pending), 1)),
            ["a1", "a3"]
        );
        assert!(ids(&mut *store, page(Some("none"), None, 0)).is_empty());
        assert!(ids(&mut *store, page(Some("q"), Some(JobState::Dead), 0)).is_empty());
    }
);
