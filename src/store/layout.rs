//! In which order a batch of new jobs is written: the order they will run.
//!
//! Workers claim by priority, so a backlog enqueued with mixed priorities in
//! input order is claimed from all over the table: each round trip's ~100 claims
//! and finishes then touch ~100 different table pages instead of a few. On
//! PostgreSQL, where a row's place in the heap is wherever it was inserted, a
//! batch's rows are inserted in run order (highest priority first, input order
//! within a priority) while every job keeps the `seq` of its place in the input,
//! so enqueue order, `list` and the claim's tie-break are exactly as before
//! (`postgres::jobs::enqueue_in`). SQLite does the same with a layout key apart
//! from `seq`, the rowid `pos` (schema version 7): a batch's rows take their
//! `pos` in run order and their `seq`s in input order (`sqlite::jobs::enqueue`;
//! DECISIONS.md §24).

use std::collections::HashMap;

use crate::job::NewJob;

/// The order a store inserts one batch's rows in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchLayout {
    /// The jobs' indices in the order their rows are inserted: run order when the
    /// batch has mixed priorities and no job runs `after` another (such a job
    /// must find the batch's earlier jobs in the table), else input order.
    pub order: Vec<usize>,
    /// Whether `order` differs from the input order, so the store must hand out
    /// the `seq`s itself (in input order) instead of in insertion order.
    pub reordered: bool,
    /// For a job of a reordered batch: the first job of the batch (input order)
    /// with the same unique key. It is not inserted, and reports what that one did
    /// ([`BatchLayout::share_keys`]), just as if the batch had been inserted in
    /// input order (the first of two twins wins, whatever their priorities).
    pub same_key_as: Vec<Option<usize>>,
}

impl BatchLayout {
    pub(crate) fn of(jobs: &[NewJob]) -> BatchLayout {
        let mut same_key_as = vec![None; jobs.len()];
        let input: Vec<usize> = (0..jobs.len()).collect();
        let mixed = jobs.windows(2).any(|w| w[0].priority != w[1].priority);
        if !mixed || jobs.iter().any(|j| !j.after.is_empty()) {
            return BatchLayout {
                order: input,
                reordered: false,
                same_key_as,
            };
        }
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = job.unique_key.as_deref() {
                same_key_as[i] = first_with.get(key).copied();
                first_with.entry(key).or_insert(i);
            }
        }
        let mut order = input;
        // A stable sort: input order within a priority.
        order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].priority));
        BatchLayout {
            order,
            reordered: true,
            same_key_as,
        }
    }

    /// Fills in what each job left out by [`BatchLayout::same_key_as`] did: the
    /// holder its first twin found, or that twin itself.
    pub(crate) fn share_keys(&self, jobs: &[NewJob], existing: &mut [Option<String>]) {
        for (i, twin) in self.same_key_as.iter().enumerate() {
            if let Some(first) = *twin {
                existing[i] = Some(
                    existing[first]
                        .clone()
                        .unwrap_or_else(|| jobs[first].id.clone()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(priority: i64) -> NewJob {
        NewJob {
            priority,
            ..NewJob::new("id".into(), "true".into(), "/".into())
        }
    }

    #[test]
    fn one_priority_keeps_the_input_order() {
        for jobs in [vec![], vec![job(5)], vec![job(1), job(1), job(1)]] {
            let layout = BatchLayout::of(&jobs);
            assert!(!layout.reordered);
            assert_eq!(layout.order, (0..jobs.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rows_go_in_by_priority_then_input_order() {
        let layout = BatchLayout::of(&[job(0), job(7), job(0), job(-3), job(7)]);
        assert!(layout.reordered);
        assert_eq!(layout.order, vec![1, 4, 0, 2, 3]);
    }

    #[test]
    fn twins_share_the_first_ones_outcome() {
        let mut jobs = vec![job(0), job(7), job(0), job(9)];
        for i in [0, 2, 3] {
            jobs[i].unique_key = Some("k".into());
        }
        let layout = BatchLayout::of(&jobs);
        assert_eq!(layout.order, vec![3, 1, 0, 2]);
        assert_eq!(layout.same_key_as, vec![None, None, Some(0), Some(0)]);
        let mut existing = vec![None; 4];
        layout.share_keys(&jobs, &mut existing);
        assert_eq!(
            existing,
            vec![None, None, Some("id".into()), Some("id".into())]
        );
        let mut held = vec![Some("old".into()), None, None, None];
        layout.share_keys(&jobs, &mut held);
        assert_eq!(held[2].as_deref(), Some("old"));
    }

    #[test]
    fn a_batch_with_after_goes_in_in_input_order() {
        let mut jobs = vec![job(0), job(7)];
        jobs[1].after = vec!["x".into()];
        let layout = BatchLayout::of(&jobs);
        assert!(!layout.reordered);
        assert_eq!(layout.order, vec![0, 1]);
        assert_eq!(layout.same_key_as, vec![None, None]);
    }
}
