//! What the supervisor reports about a run: the `--log-jobs` lines at its start and
//! end, and, when it ends, how its attempt ended (for the history) and the job's next
//! state.
//!
//! The state transitions themselves are computed in [`crate::job`]; this module only
//! picks which one applies. A run stopped by force goes back to `pending` whatever
//! its command did, because it was killed on purpose. (A run whose lease was lost
//! becomes nothing at all: another worker owns the job, so the supervisor drops it
//! before asking here.)

use std::time::Duration;

use crate::backoff::Backoff;
use crate::job::AttemptOutcome;
use crate::job::{Job, Outcome, Transition, after_attempt, after_forced_stop};

/// Why a job killed by a forced stop was interrupted.
const FORCED_STOP: &str = "stopped by force (worker stop --force or a second signal)";

/// Whether settling this run reads the backoff settings: only a failure does, so the
/// supervisor re-reads them from the store just then.
pub fn reads_backoff(forced: bool, outcome: &Outcome) -> bool {
    !forced && matches!(outcome, Outcome::Failed { .. })
}

/// How the attempt of `job` ended and the job's next state. `forced`: the run was
/// killed by a forced stop.
pub fn settle(
    job: &Job,
    forced: bool,
    outcome: &Outcome,
    backoff: &Backoff,
) -> (AttemptOutcome, Transition) {
    if forced {
        let transition = after_forced_stop(job.attempts, job.interruptions, FORCED_STOP);
        return (AttemptOutcome::Interrupted, transition);
    }
    let end = AttemptOutcome::of(outcome);
    let transition = after_attempt(
        job.attempts,
        job.max_retries,
        job.interruptions,
        outcome,
        backoff,
    );
    (end, transition)
}

/// The `--log-jobs` line for a run of `job` by `worker_id` that starts.
pub fn start_line(worker_id: &str, job: &Job) -> String {
    format!(
        "[{worker_id}] start job {} (attempt {}): {}",
        job.id,
        job.attempts + 1,
        one_line(&job.command)
    )
}

/// The `--log-jobs` line for a run of `job` by `worker_id` that ended.
pub fn end_line(
    worker_id: &str,
    job: &Job,
    outcome: &Outcome,
    took: Duration,
    next: &Transition,
) -> String {
    let timed_out;
    let result = match outcome {
        Outcome::Succeeded => "exit 0",
        Outcome::Failed { error, .. } => error,
        Outcome::Interrupted { reason } => reason,
        Outcome::TimedOut { after } => {
            timed_out = format!("timed out after {}", crate::duration::human(*after));
            &timed_out
        }
        Outcome::Cancelled => "cancelled",
    };
    // "timed out after 30s after 31s" would read badly.
    let took = match outcome {
        Outcome::TimedOut { .. } => format!(" (ran {})", crate::duration::human(took)),
        _ => format!(" after {}", crate::duration::human(took)),
    };
    format!(
        "[{worker_id}] end job {} (attempt {}): {result}{took}; now {}",
        job.id,
        job.attempts + 1,
        next.state
    )
}

/// The first line of `command`, with ` ...` if there are more: log lines stay lines.
fn one_line(command: &str) -> String {
    let line = command.lines().next().unwrap_or_default();
    if line.len() < command.len() {
        format!("{line} ...")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobState, NewJob};

    fn job(attempts: i64, max_retries: i64) -> Job {
        let new = NewJob::new("j".into(), "false".into(), "/".into());
        Job {
            state: JobState::Processing,
            attempts,
            ..Job::pending(new, max_retries, 0)
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            exit_code: Some(1),
            error: "exit 1".into(),
        }
    }

    fn backoff() -> Backoff {
        Backoff::new(2.0, Duration::from_secs(60))
    }

    #[test]
    fn each_outcome_ends_its_attempt_the_same_way() {
        let cases = [
            (
                Outcome::Succeeded,
                AttemptOutcome::Succeeded,
                JobState::Completed,
            ),
            (failed(), AttemptOutcome::Failed, JobState::Failed),
            (
                Outcome::Interrupted {
                    reason: "lease lost".into(),
                },
                AttemptOutcome::Interrupted,
                JobState::Pending,
            ),
        ];
        for (outcome, end, state) in cases {
            let (got_end, next) = settle(&job(0, 3), false, &outcome, &backoff());
            assert_eq!((got_end, next.state), (end, state), "{outcome:?}");
        }
    }

    #[test]
    fn a_run_stopped_by_force_goes_back_to_pending_whatever_its_command_did() {
        let (end, next) = settle(&job(2, 3), true, &failed(), &backoff());
        assert_eq!(end, AttemptOutcome::Interrupted);
        assert_eq!(next.state, JobState::Pending);
        assert_eq!(next.attempts, 2, "a forced stop uses up no attempt");
        assert!(
            next.last_error
                .is_some_and(|e| e.contains("stopped by force"))
        );
    }

    #[test]
    fn only_a_failure_that_was_not_forced_reads_the_backoff() {
        assert!(reads_backoff(false, &failed()));
        assert!(!reads_backoff(true, &failed()));
        assert!(!reads_backoff(false, &Outcome::Succeeded));
    }

    #[test]
    fn the_end_line_says_what_happened_and_what_comes_next() {
        let (_, next) = settle(&job(0, 0), false, &failed(), &backoff());
        let line = end_line(
            "w-1",
            &job(0, 0),
            &failed(),
            Duration::from_millis(12),
            &next,
        );
        assert_eq!(
            line,
            "[w-1] end job j (attempt 1): exit 1 after 12ms; now dead"
        );
    }

    #[test]
    fn the_end_line_of_a_stopped_run_says_why() {
        let after = Duration::from_secs(30);
        let timed_out = Outcome::TimedOut { after };
        let (_, next) = settle(&job(0, 0), false, &timed_out, &backoff());
        let line = end_line("w-1", &job(0, 0), &timed_out, after, &next);
        assert_eq!(
            line,
            "[w-1] end job j (attempt 1): timed out after 30s (ran 30s); now dead"
        );
        let (end, next) = settle(&job(0, 3), false, &Outcome::Cancelled, &backoff());
        assert_eq!(end, AttemptOutcome::Cancelled);
        let took = Duration::from_millis(1500);
        let line = end_line("w-1", &job(0, 3), &Outcome::Cancelled, took, &next);
        assert_eq!(
            line,
            "[w-1] end job j (attempt 1): cancelled after 1.5s; now cancelled"
        );
    }

    #[test]
    fn the_start_line_shows_only_the_first_line_of_the_command() {
        let mut job = job(1, 3);
        assert_eq!(
            start_line("w-1", &job),
            "[w-1] start job j (attempt 2): false"
        );
        job.command = "echo a\necho b".into();
        assert_eq!(
            start_line("w-1", &job),
            "[w-1] start job j (attempt 2): echo a ..."
        );
    }
}
