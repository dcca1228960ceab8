//! Recurring jobs in the worker: when this process asks the store to fire the due
//! cron entries ([`Store::cron_fire`](crate::store::Store::cron_fire)). Every worker process on every host does,
//! and the store makes sure each tick is enqueued once (see `store::cron`).
//!
//! Invariants:
//! - the store is asked at most once per [`MIN_INTERVAL`], and only when an entry
//!   may be due: when the earliest tick the store last reported has come, after a
//!   change elsewhere (a `cron add` or `resume` wakes workers like an enqueue), or
//!   every [`RECHECK`] in case a wake-up was missed. With nothing due the call is
//!   one read;
//! - the earliest tick is kept as a local [`Instant`] computed from the wait the
//!   store reported by its own clock, so a host whose clock is off neither fires
//!   early nor late (the store's clock decides what is due);
//! - a store failure never stops the worker: it goes to the supervisor's
//!   [`StoreRetry`](crate::worker::store_retry::StoreRetry) (logged once per outage,
//!   backoff) and the entries are looked at again once the store is back;
//! - a stopping process enqueues no more runs.

use std::time::{Duration, Instant};

use super::Supervisor;
use crate::log;
use crate::store::StopRequest;

/// The least time between two calls of one process.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often to look without a reason (a missed wake-up).
const RECHECK: Duration = Duration::from_secs(10);

/// What a process knows of the cron entries between two calls.
#[derive(Debug)]
pub(super) struct CronClock {
    /// When the earliest entry that is not paused is due, as last reported.
    due_at: Option<Instant>,
    /// Another connection committed since the last call: an entry may have been
    /// added or resumed.
    stale: bool,
    last_call: Option<Instant>,
    recheck_at: Instant,
}

impl CronClock {
    /// A new process looks at once: an entry may be overdue (one catch-up run).
    pub(super) fn new(now: Instant) -> CronClock {
        CronClock {
            due_at: Some(now),
            stale: false,
            last_call: None,
            recheck_at: now + RECHECK,
        }
    }

    /// When the store should be asked next.
    fn next_look(&self) -> Instant {
        let mut wanted = self.recheck_at;
        if let Some(due) = self.due_at {
            wanted = wanted.min(due);
        }
        let earliest = self.last_call.map(|last| last + MIN_INTERVAL);
        if let (true, Some(earliest)) = (self.stale, earliest) {
            wanted = wanted.min(earliest);
        }
        earliest.map_or(wanted, |earliest| wanted.max(earliest))
    }

    /// Takes the store's answer, received at `answered`.
    fn answered(&mut self, answered: Instant, next_due_in: Option<Duration>) {
        // Past the recheck the wait changes nothing, and a capped wait cannot
        // overflow an Instant (a next_run_at set by hand to the year 9999).
        self.due_at = next_due_in.map(|wait| answered + wait.min(RECHECK));
        self.recheck_at = answered + RECHECK;
    }
}

impl Supervisor {
    /// When the supervisor must wake to fire cron entries (`None` while stopping).
    pub(super) fn cron_wake_at(&self) -> Option<Instant> {
        (self.stop == StopRequest::None).then(|| self.cron.next_look())
    }

    /// Asks the store to enqueue the due runs, if one may be due (see the module
    /// docs). Call before the round trip, while `woken` still says whether another
    /// connection committed.
    pub(super) fn fire_cron(&mut self, now: Instant) {
        if self.woken {
            self.cron.stale = true;
        }
        if self.stop != StopRequest::None || now < self.cron.next_look() {
            return;
        }
        self.cron.last_call = Some(now);
        self.cron.stale = false;
        match self.store.cron_fire() {
            Ok(fired) => {
                self.store_retry.succeeded(now);
                self.cron.answered(Instant::now(), fired.next_due_in);
                for run in &fired.runs {
                    let tick = crate::cron::run_key(&run.name, run.tick);
                    let verb = if run.existing {
                        "already had"
                    } else {
                        "enqueued"
                    };
                    log::info(&format!("cron {tick}: {verb} job {}", run.job_id));
                }
                for (name, why) in &fired.broken {
                    log::warn(&format!(
                        "cron entry {name} cannot run ({why}); trying again in an hour, \
                         `queuectl cron remove {name}` and add it again to fix it"
                    ));
                }
                if !fired.runs.is_empty() {
                    // Claim the new runs in this round's trip.
                    self.want_claim = true;
                    self.woken = true;
                }
            }
            Err(e) => {
                self.store_retry.failed(now, &e);
                // Look again as soon as the store may be tried.
                self.cron.due_at = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_process_looks_at_once_then_at_most_once_a_second() {
        let start = Instant::now();
        let mut clock = CronClock::new(start);
        assert_eq!(clock.next_look(), start);
        clock.last_call = Some(start);
        clock.answered(start, Some(Duration::ZERO));
        assert_eq!(
            clock.next_look(),
            start + MIN_INTERVAL,
            "due now: wait a second"
        );
        clock.stale = true;
        assert_eq!(
            clock.next_look(),
            start + MIN_INTERVAL,
            "woken: wait a second"
        );
    }

    #[test]
    fn the_next_look_is_the_next_tick_or_the_recheck() {
        let start = Instant::now();
        let mut clock = CronClock::new(start);
        clock.last_call = Some(start);
        clock.answered(start, Some(Duration::from_secs(3)));
        assert_eq!(clock.next_look(), start + Duration::from_secs(3));
        clock.answered(start, Some(Duration::from_secs(3600)));
        assert_eq!(clock.next_look(), start + RECHECK);
        clock.answered(start, None);
        assert_eq!(clock.next_look(), start + RECHECK);
    }
}
