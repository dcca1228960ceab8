//! What the supervisor has to tell the store and has not yet committed: finished
//! attempts (and released prefetches) and jobs moved between slots.
//!
//! Invariants:
//! - Nothing leaves the outbox until a commit carrying it succeeded
//!   ([`Outbox::committed`]): while the store is down results wait here, in memory,
//!   and go out with the first commit that works.
//! - A result waits at most [`COMMIT_DELAY`] for others to share its commit (group
//!   commit), and not at all once the worker is stopping.

use std::time::{Duration, Instant};

use crate::store::{Finished, Lease};

/// How long a finished job's result may wait to share a commit with others.
pub const COMMIT_DELAY: Duration = Duration::from_millis(5);

/// Results and moves waiting for the next commit.
#[derive(Debug, Default)]
pub struct Outbox {
    finished: Vec<Finished>,
    /// When each of `finished` was recorded (only when timings are kept).
    finished_at: Vec<Instant>,
    /// Jobs that moved between slots: the lease and the worker that runs it now.
    reassigned: Vec<(Lease, String)>,
    /// When the oldest entry was recorded.
    oldest: Option<Instant>,
    /// Keep `finished_at`, for completion latencies.
    timings: bool,
}

impl Outbox {
    pub fn new(timings: bool) -> Outbox {
        Outbox {
            timings,
            ..Outbox::default()
        }
    }

    /// Queues a result for the next commit.
    pub fn record(&mut self, finished: Finished, now: Instant) {
        self.oldest.get_or_insert(now);
        if self.timings {
            self.finished_at.push(now);
        }
        self.finished.push(finished);
    }

    /// Queues the news that `worker_id` now runs the job of `lease`.
    pub fn reassign(&mut self, lease: Lease, worker_id: String, now: Instant) {
        self.oldest.get_or_insert(now);
        self.reassigned.push((lease, worker_id));
    }

    /// Whether no result waits (moves do not count: they need no commit of their own).
    pub fn has_no_results(&self) -> bool {
        self.finished.is_empty()
    }

    pub fn finished(&self) -> &[Finished] {
        &self.finished
    }

    pub fn reassigned(&self) -> &[(Lease, String)] {
        &self.reassigned
    }

    /// Whether what waits must be committed now: it has waited long enough, or the
    /// worker is stopping.
    pub fn commit_due(&self, now: Instant, stopping: bool) -> bool {
        self.oldest
            .is_some_and(|at| now.duration_since(at) >= COMMIT_DELAY || stopping)
    }

    /// When the oldest entry has waited long enough.
    pub fn commit_deadline(&self) -> Option<Instant> {
        self.oldest.map(|at| at + COMMIT_DELAY)
    }

    /// The results of `leases` turned out to be committed already (by a round trip
    /// whose reply was lost, `worker::reconcile`): they leave without a commit.
    pub fn confirm(&mut self, leases: &[Lease]) {
        let mut index = 0;
        self.finished.retain(|f| {
            let keep = !leases.contains(&f.lease);
            if !keep && index < self.finished_at.len() {
                self.finished_at.remove(index);
            } else {
                index += 1;
            }
            keep
        });
        if self.finished.is_empty() && self.reassigned.is_empty() {
            self.oldest = None;
        }
    }

    /// Everything waiting was committed: empties the outbox. Yields when each
    /// committed result was recorded (only when timings are kept).
    pub fn committed(&mut self) -> std::vec::Drain<'_, Instant> {
        self.finished.clear();
        self.reassigned.clear();
        self.oldest = None;
        self.finished_at.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::AttemptOutcome;
    use crate::job::after_interruption;

    fn finished(job_id: &str) -> Finished {
        Finished {
            lease: lease(job_id),
            worker_id: Some("w-1".into()),
            outcome: AttemptOutcome::Interrupted,
            transition: after_interruption(0, 0, "test"),
            output_tail: None,
            output: None,
            facts: crate::store::AttemptFacts::default(),
            only_if_expired: false,
        }
    }

    fn lease(job_id: &str) -> Lease {
        Lease {
            job_id: job_id.into(),
            token: 1,
        }
    }

    #[test]
    fn results_wait_until_a_commit_succeeds() {
        let start = Instant::now();
        let mut outbox = Outbox::new(false);
        assert!(outbox.has_no_results());
        outbox.record(finished("a"), start);
        outbox.record(finished("b"), start + COMMIT_DELAY);
        // A failed commit does not call `committed`: everything is still there.
        assert_eq!(outbox.finished().len(), 2);
        assert_eq!(outbox.committed().count(), 0, "no timings kept");
        assert!(outbox.has_no_results());
        assert!(!outbox.commit_due(start + COMMIT_DELAY * 10, true));
    }

    #[test]
    fn a_result_waits_for_company_no_longer_than_the_commit_delay() {
        let start = Instant::now();
        let mut outbox = Outbox::new(false);
        assert!(!outbox.commit_due(start, true), "nothing to commit");
        assert_eq!(outbox.commit_deadline(), None);
        outbox.record(finished("a"), start);
        outbox.record(finished("b"), start + Duration::from_millis(1));
        assert_eq!(outbox.commit_deadline(), Some(start + COMMIT_DELAY));
        assert!(!outbox.commit_due(start, false));
        assert!(
            outbox.commit_due(start, true),
            "a stopping worker commits at once"
        );
        assert!(outbox.commit_due(start + COMMIT_DELAY, false));
    }

    #[test]
    fn confirmed_results_leave_without_a_commit() {
        let start = Instant::now();
        let mut outbox = Outbox::new(true);
        outbox.record(finished("a"), start);
        outbox.record(finished("b"), start + COMMIT_DELAY);
        outbox.confirm(&[lease("a")]);
        assert_eq!(outbox.finished().len(), 1);
        assert_eq!(outbox.finished()[0].lease, lease("b"));
        outbox.confirm(&[lease("b")]);
        assert!(outbox.has_no_results());
        assert_eq!(outbox.commit_deadline(), None, "nothing left to commit");
        assert_eq!(outbox.committed().count(), 0);
    }

    #[test]
    fn a_move_between_slots_is_committed_but_is_no_result() {
        let start = Instant::now();
        let mut outbox = Outbox::new(false);
        outbox.reassign(lease("a"), "w-2".into(), start);
        assert!(outbox.has_no_results());
        assert!(outbox.commit_due(start + COMMIT_DELAY, false));
        assert_eq!(outbox.reassigned(), [(lease("a"), "w-2".to_owned())]);
        drop(outbox.committed());
        assert!(outbox.reassigned().is_empty());
    }

    #[test]
    fn with_timings_a_commit_yields_when_each_result_was_recorded() {
        let start = Instant::now();
        let later = start + Duration::from_millis(2);
        let mut outbox = Outbox::new(true);
        outbox.record(finished("a"), start);
        outbox.record(finished("b"), later);
        let recorded: Vec<Instant> = outbox.committed().collect();
        assert_eq!(recorded, [start, later]);
        assert_eq!(outbox.committed().count(), 0);
    }
}
