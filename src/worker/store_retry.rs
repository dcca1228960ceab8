//! How the supervisor rides out a store outage: when to try the store again, when to
//! say so in the log, and how long to wait after it comes back before judging other
//! workers by their leases.
//!
//! Invariants:
//! - A worker never exits because the store is down: failures only push the next try
//!   back, doubling the wait from [`FIRST_RETRY`] up to [`STORE_RETRY_MAX`].
//! - One outage logs one warning when it starts and one line when it ends, however
//!   many tries fail in between.
//! - The first success resets the backoff, so the next outage starts again with a
//!   short wait.
//!
//! Results are kept in memory meanwhile by the supervisor's [`Outbox`]; running jobs
//! keep running. All decisions take the current time as an argument, so they are
//! tested without a clock.
//!
//! [`Outbox`]: crate::worker::outbox::Outbox

use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::log;

/// The wait before the first retry of an outage.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two retries.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Opens the store for a starting worker, waiting while it cannot be reached: a
/// worker started before its database (at boot, or while PostgreSQL restarts) waits
/// for it with the outage backoff instead of exiting. Only
/// [`StoreError::Unavailable`] is waited out; a wrong location, refused credentials,
/// a store too new for this binary or a read-only store are the user's to fix, and
/// end the start at once. `waiting` is called once, when the first try fails (a
/// detached start reports itself started then, and its log says why it waits).
pub fn open_when_reachable<S>(
    mut open: impl FnMut() -> Result<S, StoreError>,
    waiting: impl FnOnce(),
) -> Result<S, StoreError> {
    let mut retry = StoreRetry::default();
    let mut waiting = Some(waiting);
    loop {
        match open() {
            Ok(store) => {
                if waiting.is_none() {
                    log::info("store reachable; starting the workers");
                }
                return Ok(store);
            }
            Err(e @ StoreError::Unavailable { .. }) => {
                if let Some(waiting) = waiting.take() {
                    log::warn(&format!(
                        "store unavailable ({e}); waiting for it, retrying with backoff \
                         (Ctrl-C stops)"
                    ));
                    waiting();
                }
                std::thread::sleep(retry.back_off());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The store's reachability as the supervisor last saw it.
#[derive(Debug)]
pub struct StoreRetry {
    /// While the store is down: when to try it again.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    delay: Duration,
    /// When the store came back after an outage.
    reconnected_at: Option<Instant>,
}

impl Default for StoreRetry {
    fn default() -> StoreRetry {
        StoreRetry {
            retry_at: None,
            delay: FIRST_RETRY,
            reconnected_at: None,
        }
    }
}

impl StoreRetry {
    /// Whether store work may be tried now (no outage, or its retry is due).
    pub fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// While the store is down: when to try it again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// When store work due at `at` can happen: not before the retry. Waiting for an
    /// overdue timer while the store is down would spin on the CPU.
    pub fn when_possible(&self, at: Instant) -> Instant {
        self.retry_at.map_or(at, |retry| at.max(retry))
    }

    /// A store call failed: the next try waits for the backoff.
    pub fn failed(&mut self, now: Instant, e: &StoreError) {
        if self.note_failure(now) {
            log::warn(&format!(
                "store unavailable ({e}); running jobs continue, retrying with backoff"
            ));
        }
    }

    /// A store call succeeded.
    pub fn succeeded(&mut self, now: Instant) {
        if self.note_success(now) {
            log::info("store reachable again");
        }
    }

    /// The wait before the next try, doubling the one after it (up to the maximum).
    pub fn back_off(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (delay * 2).min(STORE_RETRY_MAX);
        delay
    }

    /// Whether a lease period has passed since the store came back, so other
    /// workers have had their chance to renew and an expired lease means a dead
    /// worker rather than an outage.
    pub fn settled(&self, now: Instant, lease_timeout: Duration) -> bool {
        self.reconnected_at
            .is_none_or(|at| now.duration_since(at) >= lease_timeout)
    }

    /// Returns whether this failure starts an outage.
    fn note_failure(&mut self, now: Instant) -> bool {
        let starts = self.retry_at.is_none();
        self.retry_at = Some(now + self.back_off());
        starts
    }

    /// Returns whether this success ends an outage.
    fn note_success(&mut self, now: Instant) -> bool {
        let ends = self.retry_at.take().is_some();
        if ends {
            self.reconnected_at = Some(now);
        }
        self.delay = FIRST_RETRY;
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_starting_worker_waits_out_an_unavailable_store_but_not_a_wrong_one() {
        let mut tries = 0;
        let mut told = 0;
        let opened = open_when_reachable(
            || {
                tries += 1;
                if tries < 3 {
                    Err(StoreError::unavailable("connection refused"))
                } else {
                    Ok(tries)
                }
            },
            || told += 1,
        );
        assert_eq!(opened.ok(), Some(3));
        assert_eq!(told, 1, "told once that it waits, however many tries fail");

        let mut tries = 0;
        let refused = open_when_reachable(
            || -> Result<(), StoreError> {
                tries += 1;
                Err(StoreError::BadLocation("role does not exist".into()))
            },
            || panic!("a wrong location is not waited for"),
        );
        assert!(matches!(refused, Err(StoreError::BadLocation(_))));
        assert_eq!(tries, 1);
    }

    #[test]
    fn the_backoff_doubles_from_the_first_retry_up_to_the_maximum() {
        let mut retry = StoreRetry::default();
        let waits: Vec<Duration> = (0..8).map(|_| retry.back_off()).collect();
        let expected = [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(|ms| ms * MS);
        assert_eq!(waits, expected);
    }

    #[test]
    fn failures_push_the_next_try_back_by_the_backoff() {
        let start = Instant::now();
        let mut retry = StoreRetry::default();
        assert!(retry.may_try(start));
        assert!(
            retry.note_failure(start),
            "the first failure starts an outage"
        );
        assert_eq!(retry.retry_at(), Some(start + 100 * MS));
        assert!(!retry.may_try(start + 99 * MS));
        assert!(retry.may_try(start + 100 * MS));
        let later = start + 100 * MS;
        assert!(
            !retry.note_failure(later),
            "still the same outage: no new warning"
        );
        assert_eq!(retry.retry_at(), Some(later + 200 * MS));
    }

    #[test]
    fn recovery_ends_the_outage_once_and_resets_the_backoff() {
        let start = Instant::now();
        let mut retry = StoreRetry::default();
        for n in 0..4 {
            retry.note_failure(start + n * MS);
        }
        let back = start + 10 * MS;
        assert!(retry.note_success(back), "the outage ends");
        assert!(!retry.note_success(back), "nothing more to report");
        assert_eq!(retry.retry_at(), None);
        assert!(retry.may_try(back));
        assert!(retry.note_failure(back), "a new outage");
        assert_eq!(retry.retry_at(), Some(back + FIRST_RETRY));
    }

    #[test]
    fn leases_are_judged_again_one_lease_period_after_reconnecting() {
        let start = Instant::now();
        let lease = Duration::from_secs(30);
        let mut retry = StoreRetry::default();
        assert!(retry.settled(start, lease), "never disconnected");
        retry.note_failure(start);
        retry.note_success(start + MS);
        assert!(!retry.settled(start + MS, lease));
        assert!(!retry.settled(start + lease, lease));
        assert!(retry.settled(start + MS + lease, lease));
    }

    #[test]
    fn store_timers_wait_for_the_retry_while_the_store_is_down() {
        let start = Instant::now();
        let mut retry = StoreRetry::default();
        assert_eq!(retry.when_possible(start), start);
        retry.note_failure(start);
        assert_eq!(retry.when_possible(start), start + FIRST_RETRY);
        let late = start + 2 * FIRST_RETRY;
        assert_eq!(retry.when_possible(late), late);
    }
}
