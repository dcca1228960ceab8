//! The dashboard's throughput chart: attempts finished per bucket, counted the same
//! way on both stores.

use std::time::Duration;

use queuectl::store::Exchange;

use crate::{
    LONG_LEASE, conformance_test, enqueue, exchange, failed, no_backoff, report, succeeded,
};

conformance_test!(
    finished_attempts_are_counted_in_the_newest_bucket,
    |stores| {
        let mut store = stores.open();
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        let empty = store.throughput(hour, minute).expect("throughput");
        assert_eq!(empty.succeeded, vec![0; 60]);
        assert_eq!(empty.other, vec![0; 60]);
        assert_eq!(empty.bucket_ms, 60_000);

        enqueue(&mut *store, &["a", "b", "c"]);
        let slots = vec!["w1".to_owned(); 3];
        let reply = exchange(
            &mut *store,
            &Exchange {
                claim_for: &slots,
                lease_timeout: LONG_LEASE,
                ..Exchange::default()
            },
        );
        let runs: Vec<_> = reply
            .claimed
            .iter()
            .map(|(_, job)| {
                if job.id == "c" {
                    failed(job, &no_backoff())
                } else {
                    succeeded(job)
                }
            })
            .collect();
        assert_eq!(runs.len(), 3);
        assert!(report(&mut *store, &runs).rejected.is_empty());

        let t = store.throughput(hour, minute).expect("throughput");
        assert_eq!(t.succeeded.len(), 60);
        assert_eq!(t.succeeded.iter().sum::<i64>(), 2);
        assert_eq!(t.other.iter().sum::<i64>(), 1);
        // Just finished: in the last bucket (or the one before, at a minute's edge).
        let recent: i64 = t.succeeded[58..].iter().sum();
        assert_eq!(recent, 2);
        // A window shorter than a bucket still has one bucket.
        let tiny = store
            .throughput(Duration::from_millis(1), Duration::from_millis(1))
            .expect("throughput");
        assert_eq!(tiny.succeeded.len(), 1);
    }
);
