//! What a worker process tells whoever started it, as it happens: it started, a job
//! started, a job ended, it is stopping and why, it stopped. `worker start --json`
//! prints these as JSON lines and `worker start --detach` waits for the first one;
//! the human log says the same in words (see [`crate::log`]).
//!
//! Notices are plain data, sent from the supervisor thread in the order things
//! happened; the sink ([`NoticeSink`]) decides how to show them and must not block
//! for long, since the supervisor waits for it.

use std::sync::Arc;
use std::time::Duration;

use crate::job::{AttemptOutcome, Job, JobState};
use crate::worker::Summary;

/// One thing a worker process reports.
#[derive(Debug)]
pub enum Notice<'a> {
    /// The workers are registered in the store and about to claim.
    Started {
        host: &'a str,
        pid: i64,
        /// The ids of the process's workers.
        workers: &'a [String],
        /// The store, described without a password.
        store: &'a str,
    },
    /// `worker` starts attempt `attempt` (1-based) of `job`.
    JobStarted {
        worker: &'a str,
        job: &'a Job,
        attempt: i64,
    },
    /// `worker` finished attempt `attempt` of `job`.
    JobEnded {
        worker: &'a str,
        job: &'a Job,
        attempt: i64,
        outcome: AttemptOutcome,
        exit_code: Option<i64>,
        /// What went wrong, when something did.
        error: Option<&'a str>,
        took: Duration,
        /// The job's state after this attempt.
        state: JobState,
    },
    /// The process stops claiming; `force`: running jobs are being killed (they go
    /// back to pending without using an attempt), otherwise they finish first.
    Stopping { reason: StopReason, force: bool },
    /// The process is about to exit.
    Stopped { summary: &'a Summary },
}

/// Why a worker process stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A signal: `SIGINT`, `SIGTERM` or `SIGHUP`.
    Signal(&'static str),
    /// `queuectl worker stop` (from any terminal or machine).
    Requested,
    /// `--burst` found nothing left to run.
    Burst,
}

impl StopReason {
    /// The reason in the words of the worker's log, e.g. `SIGHUP received`.
    pub fn describe(self) -> String {
        match self {
            StopReason::Signal(name) => format!("{name} received"),
            StopReason::Requested => "stop requested by `queuectl worker stop`".into(),
            StopReason::Burst => "no job left to run (--burst)".into(),
        }
    }
}

/// Receives every [`Notice`] of a worker process.
pub type NoticeSink = Arc<dyn Fn(&Notice<'_>) + Send + Sync>;

/// The name of a signal the worker stops on (`SIGTERM`), or `a signal`.
pub fn stop_signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reason_names_its_signal() {
        let hup = StopReason::Signal(stop_signal_name(libc::SIGHUP));
        assert_eq!(hup.describe(), "SIGHUP received");
        assert_eq!(
            StopReason::Signal(stop_signal_name(libc::SIGTERM)).describe(),
            "SIGTERM received"
        );
        assert_eq!(stop_signal_name(libc::SIGUSR1), "a signal");
    }
}
