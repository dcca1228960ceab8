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
    assert_eq!(ids(&mut *store, all), ["a", "b", "c", "d", "e"]);
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
                ..all
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
                ..all
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
            ..all
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
