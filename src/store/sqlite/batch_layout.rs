//! Tests only: a batch of mixed priorities goes into the table in the order it
//! will run (its rows' `pos`, the rowid) while every job keeps the `seq` of its
//! input place (`jobs::enqueue`, `crate::store::layout`), and its attempts are
//! keyed where its rows are.

use super::SqliteStore;
use crate::job::NewJob;
use crate::store::{IfMissing, OpenFor, Store};

fn job(id: &str, priority: i64) -> NewJob {
    NewJob {
        priority,
        ..NewJob::new(id.into(), "true".into(), "/".into())
    }
}

/// The first column of every row `sql` returns.
fn column<T: rusqlite::types::FromSql>(store: &SqliteStore, sql: &str) -> Vec<T> {
    let mut stmt = store.conn.prepare(sql).expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("read")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

#[test]
fn a_mixed_batch_is_stored_in_run_order_and_keeps_its_input_seqs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = SqliteStore::open(
        &dir.path().join("q.db"),
        OpenFor::Command,
        IfMissing::Create,
    )
    .expect("store");
    store
        .enqueue(&[job("a", 0), job("b", 5), job("c", 0), job("d", 9)])
        .expect("enqueue");
    // All of one priority: inserted, and numbered, as given.
    store.enqueue(&[job("e", 1), job("f", 1)]).expect("enqueue");
    assert_eq!(
        column::<String>(&store, "SELECT id FROM jobs ORDER BY seq"),
        ["a", "b", "c", "d", "e", "f"]
    );
    assert_eq!(
        column::<String>(&store, "SELECT id FROM jobs ORDER BY rowid"),
        ["d", "b", "a", "c", "e", "f"]
    );
    // The seqs are the input places, one past the newest job before the batch.
    let seqs: Vec<i64> = column(&store, "SELECT seq FROM jobs ORDER BY seq");
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn twins_of_a_mixed_batch_keep_the_first_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = SqliteStore::open(
        &dir.path().join("q.db"),
        OpenFor::Command,
        IfMissing::Create,
    )
    .expect("store");
    let keyed = |id: &str, priority: i64| NewJob {
        unique_key: Some("k".into()),
        ..job(id, priority)
    };
    let done = store
        .enqueue(&[keyed("low", 0), job("mid", 3), keyed("high", 9)])
        .expect("enqueue");
    assert_eq!(
        done.existing,
        [None, None, Some("low".to_owned())],
        "the later twin reports the first"
    );
    assert_eq!(
        column::<String>(&store, "SELECT id FROM jobs ORDER BY rowid"),
        ["mid", "low"]
    );
    assert_eq!(
        column::<String>(&store, "SELECT id FROM jobs ORDER BY seq"),
        ["low", "mid"]
    );
}
