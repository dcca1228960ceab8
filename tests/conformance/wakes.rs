//! Wake-ups: a worker subscribed for work learns of new jobs committed by another
//! connection (PostgreSQL: `NOTIFY`; SQLite: the doorbell), without polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use queuectl::store::Duty;

use crate::{conformance_test, enqueue, wait_until};

conformance_test!(an_enqueue_by_another_connection_wakes_a_worker, |stores| {
    let subscriber = stores.open();
    let woken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&woken);
    subscriber
        .subscribe_worker(
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            Arc::new(Duty::new(None)),
        )
        .expect("subscribe");
    let mut other = stores.open();
    // PostgreSQL's listener connects in the background and a NOTIFY sent before it
    // listens is lost, so enqueue until one arrives rather than once.
    let mut n = 0;
    wait_until(
        "an enqueue by another connection to wake the subscriber",
        Duration::from_secs(20),
        || {
            if woken.load(Ordering::SeqCst) > 0 {
                return true;
            }
            n += 1;
            enqueue(&mut *other, &[&format!("wake-{n}")]);
            false
        },
    );
});
