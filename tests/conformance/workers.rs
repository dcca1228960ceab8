//! The worker registry: who is running where, and stop requests addressed to them.

use queuectl::store::{
    Exchange, ProcessKey, StopRequest, Store, WorkerInfo, WorkerRow, WorkerState,
};

use crate::{LONG_LEASE, claim, conformance_test, enqueue, exchange};

fn worker(id: &str, host: &str, pid: i64) -> WorkerInfo {
    WorkerInfo {
        id: id.to_owned(),
        host: host.to_owned(),
        pid,
        pid_start: 1000 + pid,
    }
}

/// What a worker process with key `process` reads in a read-only round trip.
fn stop_seen_by(store: &mut dyn Store, process: &ProcessKey) -> StopRequest {
    exchange(
        store,
        &Exchange {
            process: Some(process),
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    )
    .stop
}

fn states(rows: &[WorkerRow]) -> Vec<(&str, WorkerState)> {
    rows.iter().map(|w| (w.info.id.as_str(), w.state)).collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

conformance_test!(registered_workers_are_live_until_ended, |stores| {
    let mut store = stores.open();
    let registered = [
        worker("h1-a", "h1", 100),
        worker("h1-b", "h1", 100),
        worker("h2-a", "h2", 200),
    ];
    store.register_workers(&registered).expect("register");
    let live = store.workers(false).expect("workers");
    let infos: Vec<WorkerInfo> = live.iter().map(|w| w.info.clone()).collect();
    assert_eq!(infos, registered);
    assert!(
        live.iter()
            .all(|w| w.state == WorkerState::Idle && w.job.is_none())
    );

    enqueue(&mut *store, &["job"]);
    claim(&mut *store, "h2-a", LONG_LEASE).expect("a job to claim");
    let busy = store.workers(false).expect("workers");
    let h2 = busy
        .iter()
        .find(|w| w.info.id == "h2-a")
        .expect("h2-a listed");
    assert_eq!(
        (h2.state, h2.job.as_deref()),
        (WorkerState::Busy, Some("job"))
    );

    store
        .end_workers(&["h1-a".to_owned()], WorkerState::Stopped)
        .expect("end");
    store
        .end_workers(&["h1-b".to_owned()], WorkerState::Lost)
        .expect("end");
    let live = store.workers(false).expect("workers");
    assert_eq!(states(&live), [("h2-a", WorkerState::Busy)]);
    let all = store.workers(true).expect("workers");
    assert_eq!(
        states(&all),
        [
            ("h1-a", WorkerState::Stopped),
            ("h1-b", WorkerState::Lost),
            ("h2-a", WorkerState::Busy),
        ]
    );
    assert!(all[..2].iter().all(|w| !w.state.is_live()));
});

conformance_test!(
    a_stop_request_reaches_the_processes_on_its_host_only,
    |stores| {
        let mut store = stores.open();
        store
            .register_workers(&[
                worker("h1-a", "h1", 100),
                worker("h1-b", "h1", 100),
                worker("h2-a", "h2", 200),
            ])
            .expect("register");
        let on_h1 = ProcessKey {
            host: "h1".to_owned(),
            pid: 100,
        };
        let on_h2 = ProcessKey {
            host: "h2".to_owned(),
            pid: 200,
        };
        assert_eq!(stop_seen_by(&mut *store, &on_h1), StopRequest::None);

        let asked = store
            .request_stop(Some("h1"), StopRequest::Graceful)
            .expect("stop");
        assert_eq!(sorted(asked), ["h1-a", "h1-b"]);
        let mut worker_process = stores.open();
        assert_eq!(
            stop_seen_by(&mut *worker_process, &on_h1),
            StopRequest::Graceful
        );
        assert_eq!(
            stop_seen_by(&mut *worker_process, &on_h2),
            StopRequest::None
        );
        let live = store.workers(false).expect("workers");
        assert_eq!(
            states(&live),
            [
                ("h1-a", WorkerState::Stopping),
                ("h1-b", WorkerState::Stopping),
                ("h2-a", WorkerState::Idle),
            ]
        );

        // A force request overrides a graceful one, and a later graceful one does not
        // weaken it.
        store
            .request_stop(Some("h1"), StopRequest::Force)
            .expect("stop");
        store
            .request_stop(Some("h1"), StopRequest::Graceful)
            .expect("stop");
        assert_eq!(
            stop_seen_by(&mut *worker_process, &on_h1),
            StopRequest::Force
        );

        // Ended workers are no longer asked, and their process reads no request.
        store
            .end_workers(
                &["h1-a".to_owned(), "h1-b".to_owned()],
                WorkerState::Stopped,
            )
            .expect("end");
        assert_eq!(
            stop_seen_by(&mut *worker_process, &on_h1),
            StopRequest::None
        );
        let everywhere = store
            .request_stop(None, StopRequest::Graceful)
            .expect("stop");
        assert_eq!(everywhere, ["h2-a"]);
        assert_eq!(
            stop_seen_by(&mut *worker_process, &on_h2),
            StopRequest::Graceful
        );
    }
);
