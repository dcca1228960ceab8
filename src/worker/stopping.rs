//! Runs the supervisor stops before their command ends: at the job's deadline
//! (`--timeout`, `job-timeout`) or because a user cancelled the job.
//!
//! Invariants:
//! - The deadline is the store's time left (`deadline_at - started_at`, both set
//!   at claim by the store's clock) carried over to this host's monotonic clock
//!   from the instant the command is started in its slot, so a skewed or
//!   jumping wall clock cannot shorten or stretch a timeout, and neither can the
//!   claim's round trip, a stopped worker or a wait in the slot (a job claimed
//!   ahead): the timeout is the command's own time.
//! - Once a run is being stopped for a reason, that reason decides its outcome,
//!   whatever exit status the killed command ends with: a cancel beats everything (a
//!   cancelled job is never run again, not even after a forced stop), a timeout beats
//!   the command's own status but not a forced stop (which is not the job's fault).
//!
//! Pure functions of their arguments; the supervisor does the signalling.

use std::time::{Duration, Instant};

use crate::job::{Job, Outcome};

/// When a run's time is up, on this host's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    /// The job's timeout, for `timed out after 30s`.
    pub after: Duration,
}

/// The local deadline of `job`, whose command starts at `started`; `None` for a job
/// without a timeout.
pub fn local_deadline(started: Instant, job: &Job) -> Option<Deadline> {
    let left_ms = job.deadline_at?.saturating_sub(job.started_at?);
    let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
    let after = job
        .timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(left, Duration::from_millis);
    Some(Deadline {
        at: started + left,
        after,
    })
}

/// Why the supervisor is stopping a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    TimedOut { after: Duration },
    Cancelled,
}

impl Ending {
    /// Whether this reason replaces `other` as the run's ending: a cancel replaces a
    /// timeout, nothing replaces a cancel.
    pub fn overrides(self, other: Option<Ending>) -> bool {
        match other {
            None => true,
            Some(Ending::TimedOut { .. }) => self == Ending::Cancelled,
            Some(Ending::Cancelled) => false,
        }
    }
}

/// What a run's end means given why it was stopped: `(forced, outcome)` to settle
/// it with (see the module docs).
pub fn decide(forced: bool, ending: Option<Ending>, executed: Outcome) -> (bool, Outcome) {
    match ending {
        Some(Ending::Cancelled) => (false, Outcome::Cancelled),
        Some(Ending::TimedOut { .. }) if forced => (true, executed),
        Some(Ending::TimedOut { after }) => (false, Outcome::TimedOut { after }),
        None => (forced, executed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobState, NewJob};

    fn claimed(started_at: i64, deadline_at: Option<i64>, timeout_ms: Option<i64>) -> Job {
        let new = NewJob {
            timeout_ms,
            ..NewJob::new("j".into(), "sleep 100".into(), "/".into())
        };
        Job {
            state: JobState::Processing,
            started_at: Some(started_at),
            deadline_at,
            ..Job::pending(new, 0, 0)
        }
    }

    #[test]
    fn the_local_deadline_is_the_start_instant_plus_the_stores_time_left() {
        let claim = Instant::now();
        // The store's clock is far off ours: only the difference counts.
        let job = claimed(5_000_000, Some(5_030_000), Some(30_000));
        let deadline = local_deadline(claim, &job).expect("has a timeout");
        assert_eq!(deadline.at, claim + Duration::from_secs(30));
        assert_eq!(deadline.after, Duration::from_secs(30));
    }

    #[test]
    fn no_deadline_without_one_stored_and_a_past_one_is_due_at_once() {
        let claim = Instant::now();
        assert_eq!(local_deadline(claim, &claimed(1000, None, None)), None);
        let odd = claimed(2000, Some(1000), None);
        let deadline = local_deadline(claim, &odd).expect("has a deadline");
        assert_eq!((deadline.at, deadline.after), (claim, Duration::ZERO));
    }

    #[test]
    fn why_a_run_was_stopped_decides_its_outcome() {
        let after = Duration::from_secs(30);
        let exit_0 = || Outcome::Succeeded;
        let timed_out = Some(Ending::TimedOut { after });
        assert_eq!(
            decide(false, timed_out, exit_0()),
            (false, Outcome::TimedOut { after })
        );
        assert_eq!(decide(true, timed_out, exit_0()), (true, exit_0()));
        for forced in [false, true] {
            assert_eq!(
                decide(forced, Some(Ending::Cancelled), exit_0()),
                (false, Outcome::Cancelled)
            );
        }
        assert_eq!(decide(true, None, exit_0()), (true, exit_0()));
    }

    #[test]
    fn a_cancel_overrides_a_timeout_but_nothing_overrides_a_cancel() {
        let timed_out = Ending::TimedOut {
            after: Duration::from_secs(1),
        };
        assert!(timed_out.overrides(None));
        assert!(Ending::Cancelled.overrides(Some(timed_out)));
        assert!(!timed_out.overrides(Some(Ending::Cancelled)));
        assert!(!Ending::Cancelled.overrides(Some(Ending::Cancelled)));
    }
}
