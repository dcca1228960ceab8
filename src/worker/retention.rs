//! Retention: with the `retention` setting, every worker process deletes finished
//! jobs older than that in the background.
//!
//! Invariants:
//! - Small batches ([`BATCH`] jobs per call), so a worker never holds the store for
//!   long; a full batch is followed by the next one a second later, so a backlog
//!   drains, otherwise once per [`CLEAN_EVERY`] (and right after start).
//! - A failure is logged and tried again later; it never stops the worker.
//! - Only [`Store::clean`] decides what goes: finished jobs, never unfinished ones.

use std::time::{Duration, Instant};

use crate::log;
use crate::store::{CleanRequest, Store};

/// How often a worker process cleans when there is no backlog.
pub const CLEAN_EVERY: Duration = Duration::from_secs(60);
/// The most jobs one clean deletes.
pub const BATCH: usize = 500;
/// The wait after a full batch.
const BACKLOG_PAUSE: Duration = Duration::from_secs(1);

/// When a worker process cleans next.
#[derive(Debug)]
pub struct Retention {
    next_at: Instant,
}

impl Retention {
    /// The first clean is due at once.
    pub fn new(now: Instant) -> Retention {
        Retention { next_at: now }
    }

    /// Deletes a batch of finished jobs older than `keep`, if it is set and a clean
    /// is due.
    pub fn clean_if_due(&mut self, store: &mut dyn Store, keep: Option<Duration>, now: Instant) {
        let Some(keep) = keep else {
            return;
        };
        if now < self.next_at {
            return;
        }
        self.next_at = now + CLEAN_EVERY;
        let request = CleanRequest {
            states: Vec::new(),
            older_than: Some(keep),
            limit: Some(BATCH),
        };
        match store.clean(&request) {
            Ok(cleaned) => {
                if cleaned.jobs > 0 || cleaned.workers > 0 {
                    log::info(&format!(
                        "retention: deleted {} finished job(s) older than {} and {} old worker row(s)",
                        cleaned.jobs,
                        crate::duration::human(keep),
                        cleaned.workers
                    ));
                }
                if cleaned.jobs >= BATCH as u64 {
                    self.next_at = now + BACKLOG_PAUSE;
                }
            }
            Err(e) => log::warn(&format!(
                "retention: could not delete old jobs ({e}); trying again in {}",
                crate::duration::human(CLEAN_EVERY)
            )),
        }
    }
}
