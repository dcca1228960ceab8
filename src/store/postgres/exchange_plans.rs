//! Tests only: the worker round trip's statements hold up (`exchange.rs`): the claim
//! stays one index scan of `jobs_ready`, and a claiming round trip really locks the
//! limited queues' rows. Run when `QUEUECTL_TEST_POSTGRES_URL` is set.

use std::time::Duration;

use super::PgStore;
use super::exchange::{CLAIM_NEXT, READ_STOP_AND_CANCELS};
use crate::job::NewJob;
use crate::store::{Location, QueueChange, Store};

/// A claiming round trip locks the rows of the queues with a concurrency limit
/// until it commits (so concurrent claims count each other's running jobs), and
/// a round trip that claims nothing locks none. Another connection's `NOWAIT`
/// lock of the same row fails while the first transaction is open. Runs when
/// `QUEUECTL_TEST_POSTGRES_URL` is set.
#[test]
fn the_round_trip_holds_the_limited_queues_until_it_commits() {
    let Ok(url) = std::env::var("QUEUECTL_TEST_POSTGRES_URL") else {
        eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("lock_{}", crate::job::generate_id());
    let Ok(Location::Postgres(pg)) = Location::parse(&url, Some(&schema)) else {
        panic!("bad QUEUECTL_TEST_POSTGRES_URL");
    };
    let mut store = PgStore::open(&pg, crate::store::IfMissing::Create).expect("store");
    let mut other = PgStore::open(&pg, crate::store::IfMissing::Create).expect("second store");
    store
        .set_queue("limited", QueueChange::Concurrency(Some(1)))
        .expect("limit");
    let mut held_while = |claiming: bool| -> bool {
        let conn = store.conn().expect("connection");
        let mut tx = conn.client.transaction().expect("begin");
        tx.query(READ_STOP_AND_CANCELS, &[&"h", &1i64, &true, &claiming])
            .expect("round trip");
        let probe = other
            .conn()
            .expect("second connection")
            .client
            .query("SELECT name FROM queues FOR UPDATE NOWAIT", &[]);
        tx.rollback().expect("rollback");
        match probe {
            Ok(_) => false,
            Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => true,
            Err(e) => panic!("probe: {e}"),
        }
    };
    let claiming = held_while(true);
    let not_claiming = held_while(false);
    let _ = store.drop_schema();
    assert!(
        claiming,
        "a claiming round trip left the limited queue unlocked"
    );
    assert!(
        !not_claiming,
        "a round trip that claims nothing locked a queue"
    );
}

/// The claim stays one index scan of `jobs_ready` with priorities, delayed jobs,
/// a paused queue, a concurrency limit and a queue filter in play: no sequential
/// scan of `jobs` and no sort of it (the run order comes from the index). Runs
/// when `QUEUECTL_TEST_POSTGRES_URL` is set.
#[test]
fn the_claim_reads_jobs_ready_alone() {
    let Ok(url) = std::env::var("QUEUECTL_TEST_POSTGRES_URL") else {
        eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("plan_{}", crate::job::generate_id());
    let Ok(Location::Postgres(pg)) = Location::parse(&url, Some(&schema)) else {
        panic!("bad QUEUECTL_TEST_POSTGRES_URL");
    };
    let mut store = PgStore::open(&pg, crate::store::IfMissing::Create).expect("store");
    let jobs: Vec<NewJob> = (0..5000)
        .map(|i| {
            let mut job = NewJob::new(format!("j{i}"), "true".into(), "/".into());
            job.priority = i % 7 - 3;
            job.queue = ["a", "b", "paused", "limited"][i as usize % 4].into();
            if i % 3 == 0 {
                job.start = crate::job::options::Start::After(Duration::from_secs(3600));
            }
            job
        })
        .collect();
    store.enqueue(&jobs).expect("enqueue");
    store
        .set_queue("paused", QueueChange::Pause)
        .expect("pause");
    store
        .set_queue("limited", QueueChange::Concurrency(Some(1)))
        .expect("limit");
    let conn = store.conn().expect("connection");
    conn.client.batch_execute("ANALYZE jobs").expect("analyze");
    let workers = vec!["w".to_owned()];
    let queues = Some(vec!["a".to_owned(), "limited".to_owned()]);
    let rows = conn
        .client
        .query(
            &format!("EXPLAIN {CLAIM_NEXT}"),
            &[&1i64, &1000i64, &workers, &queues],
        )
        .expect("explain");
    let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let text = plan.join("\n");
    let _ = store.drop_schema();
    assert!(
        text.contains("Index Scan using jobs_ready on jobs"),
        "{text}"
    );
    assert!(!text.contains("Seq Scan on jobs"), "{text}");
    // Sorts of the few picked rows (to number them) are fine; a sort of jobs is not.
    assert!(!text.contains("Sort Key: jobs."), "{text}");
}
