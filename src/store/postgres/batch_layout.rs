//! Tests only: a batch of mixed priorities goes into the heap in the order it will
//! run while every job keeps the `seq` of its input place (`jobs::enqueue_in`,
//! `crate::store::layout`). Runs when `QUEUECTL_TEST_POSTGRES_URL` is set.

use super::PgStore;
use crate::job::NewJob;
use crate::store::{Location, Store};

#[test]
fn a_mixed_batch_is_stored_in_run_order_and_keeps_its_input_seqs() {
    let Ok(url) = std::env::var("QUEUECTL_TEST_POSTGRES_URL") else {
        eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("layout_{}", crate::job::generate_id());
    let Ok(Location::Postgres(pg)) = Location::parse(&url, Some(&schema)) else {
        panic!("bad QUEUECTL_TEST_POSTGRES_URL");
    };
    let mut store = PgStore::open(&pg, crate::store::IfMissing::Create).expect("store");
    let job = |id: &str, priority: i64| NewJob {
        priority,
        ..NewJob::new(id.into(), "true".into(), "/".into())
    };
    store
        .enqueue(&[job("a", 0), job("b", 5), job("c", 0), job("d", 9)])
        .expect("enqueue");
    // All of one priority: inserted, and numbered, as given.
    store.enqueue(&[job("e", 1), job("f", 1)]).expect("enqueue");
    let conn = store.conn().expect("connection");
    let mut ids = |sql: &str| -> Vec<String> {
        conn.client
            .query(sql, &[])
            .expect("read")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let by_seq = ids("SELECT id FROM jobs ORDER BY seq");
    let by_place = ids("SELECT id FROM jobs ORDER BY ctid");
    let _ = store.drop_schema();
    assert_eq!(by_seq, ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(by_place, ["d", "b", "a", "c", "e", "f"]);
}
