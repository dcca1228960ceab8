//! What `worker start` asks of a worker process ([`Options`]) and what the process
//! reports when it exits ([`Summary`]).
//!
//! The summary counts every run that ended once: succeeded, failed, or interrupted
//! (forced stops, lost leases and interruptions alike), so the three add up to the
//! runs the process finished.

use std::sync::Arc;
use std::time::Duration;

use crate::job::AttemptOutcome;
use crate::job::Job;
use crate::worker::notice::NoticeSink;

/// How a worker runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// `sh -c COMMAND`: what users get.
    Shell,
    /// Succeeds at once without starting a process: measures the queue alone.
    Noop,
}

/// What `worker start` asked for.
#[derive(Clone)]
pub struct Options {
    pub count: usize,
    /// Exit once nothing runs, no failed job waits for a retry, and no pending job
    /// is ready for this worker (delayed, blocked, paused or unserved ones are left).
    pub burst: bool,
    pub executor: Executor,
    /// Print a line per job start and end.
    pub log_jobs: bool,
    /// Stop on SIGINT/SIGTERM/SIGHUP (first: drain, second SIGINT/SIGTERM: force).
    pub handle_signals: bool,
    /// Record claim and completion latencies in the [`Summary`] (for `bench`).
    pub timings: bool,
    /// Called as soon as a job's process has started.
    pub on_spawn: Option<SpawnHook>,
    /// Serve only these queues (`worker start --queue`); `None`: all.
    pub queues: Option<Vec<String>>,
    /// Told what the process does as it happens (`worker start --json`, `--detach`).
    pub on_notice: Option<NoticeSink>,
    /// Where to record how long each writing store round trip took (`worker start
    /// --metrics`); `None`: not measured.
    pub round_trips: Option<crate::worker::metrics_server::RoundTrips>,
}

/// See [`Options::on_spawn`].
pub type SpawnHook = Arc<dyn Fn(&Job) + Send + Sync>;

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("count", &self.count)
            .field("burst", &self.burst)
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

/// What a worker process did, reported when it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: u64,
    pub failed: u64,
    pub interrupted: u64,
    /// Store round trips that committed.
    pub round_trips: u64,
    /// Of those, the ones that asked to claim jobs (one claim statement each)...
    pub claim_round_trips: u64,
    /// ...and of those, the ones that found nothing to claim: an idle process
    /// woken by a change another process took first (`bench/scale-out.py`).
    pub empty_claims: u64,
    /// With [`Options::timings`]: for each claimed job, the round trip that claimed it.
    pub claim_latencies: Vec<Duration>,
    /// With [`Options::timings`]: for each finished job, from its end to its result
    /// being committed.
    pub completion_latencies: Vec<Duration>,
}

impl Summary {
    /// Counts one run that ended as `end`.
    pub fn count(&mut self, end: AttemptOutcome) {
        match end {
            AttemptOutcome::Succeeded => self.succeeded += 1,
            AttemptOutcome::Failed | AttemptOutcome::TimedOut | AttemptOutcome::Cancelled => {
                self.failed += 1
            }
            AttemptOutcome::Interrupted | AttemptOutcome::Released => self.interrupted += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_counts_as_exactly_one_of_the_three() {
        let mut summary = Summary::default();
        for end in [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::Failed,
            AttemptOutcome::Interrupted,
            AttemptOutcome::Released,
        ] {
            summary.count(end);
        }
        assert_eq!(
            (summary.succeeded, summary.failed, summary.interrupted),
            (1, 2, 2)
        );
    }
}
