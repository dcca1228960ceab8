//! What the dashboard's throughput chart reads: attempts that finished in a recent
//! window, counted per bucket ([`Throughput`]). Both backends run one grouped read
//! of `attempts` and hand the rows to [`Throughput::from_rows`], so the buckets are
//! laid out the same way on both stores.
//!
//! Invariants: buckets are counted back from the store's clock (`now`), the last one
//! ending at `now`; every bucket is present, empty ones as zero.

use std::time::Duration;

use crate::store::millis;

/// Attempts finished per bucket over a window ending at the store's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throughput {
    /// The store's clock when read: the end of the last bucket.
    pub now: i64,
    pub bucket_ms: i64,
    /// Per bucket, oldest first: attempts that succeeded.
    pub succeeded: Vec<i64>,
    /// Per bucket: attempts that ended any other way (failed, timed out, ...).
    pub other: Vec<i64>,
}

impl Throughput {
    /// The window's start and the bucket length in ms, as the SQL wants them
    /// (a bucket of at least 1 ms; at least one bucket).
    pub(crate) fn bounds(now: i64, window: Duration, bucket: Duration) -> (i64, i64, usize) {
        let bucket_ms = millis(bucket).max(1);
        let count = usize::try_from(millis(window) / bucket_ms)
            .unwrap_or(0)
            .max(1);
        let since = now - bucket_ms * count as i64;
        (since, bucket_ms, count)
    }

    /// Lays out grouped rows `(bucket index, succeeded, all)`. The last bucket ends
    /// at `now` inclusive: an attempt that finished in the very millisecond the
    /// clock was read (index `count`), or after it (another machine's clock ahead),
    /// counts there; negative indexes cannot occur (the SQL reads from the start).
    pub(crate) fn from_rows(
        now: i64,
        bucket_ms: i64,
        count: usize,
        rows: impl IntoIterator<Item = (i64, i64, i64)>,
    ) -> Throughput {
        let mut out = Throughput {
            now,
            bucket_ms,
            succeeded: vec![0; count],
            other: vec![0; count],
        };
        for (index, succeeded, all) in rows {
            if let (Ok(i), Some(last)) = (usize::try_from(index), count.checked_sub(1)) {
                let i = i.min(last);
                out.succeeded[i] += succeeded;
                out.other[i] += all - succeeded;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_at_now_and_empty_ones_are_zero() {
        let (since, bucket, count) =
            Throughput::bounds(10_000, Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!((since, bucket, count), (5_000, 1_000, 5));
        let t = Throughput::from_rows(10_000, bucket, count, [(0, 1, 3), (4, 2, 2)]);
        assert_eq!(t.succeeded, [1, 0, 0, 0, 2]);
        assert_eq!(t.other, [2, 0, 0, 0, 0]);
        // Finished at `now` itself (index 5) or after it: the last bucket.
        let t = Throughput::from_rows(10_000, bucket, count, [(5, 1, 1), (9, 0, 2)]);
        assert_eq!(t.succeeded, [0, 0, 0, 0, 1]);
        assert_eq!(t.other, [0, 0, 0, 0, 2]);
    }
}
