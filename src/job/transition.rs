//! The state transitions: given a job's counters and how its attempt (or a user's
//! request) ended, the [`Transition`] a store must apply. This is the only place that
//! decides a job's next state; see the diagram on [`super::JobState`].

use std::time::Duration;

use super::{Job, JobState, MAX_INTERRUPTIONS, Outcome};
use crate::backoff::Backoff;
use crate::duration;
use crate::error::StoreError;

/// The next state of a job, computed here and persisted by a store. Delays are
/// relative so that each store can add them to its own clock (PostgreSQL uses the
/// database's, so hosts with skewed clocks agree).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: JobState,
    pub attempts: i64,
    pub interruptions: i64,
    /// Delay from now until the job is claimable again (for `pending` and `failed`).
    pub run_after: Duration,
    /// The job keeps its place in line: it stays ready since when it was before
    /// (`run_after` is ignored). Only for a job given back unstarted, so a worker
    /// that claimed ahead and gave the job back does not move it behind jobs that
    /// became ready after it.
    pub keeps_place: bool,
    pub exit_code: Option<i64>,
    pub last_error: Option<String>,
}

/// The transition after a finished attempt. `attempts_before` and `max_retries` are the
/// job's values when it was claimed.
pub fn after_attempt(
    attempts_before: i64,
    max_retries: i64,
    interruptions: i64,
    outcome: &Outcome,
    backoff: &Backoff,
) -> Transition {
    let attempts = attempts_before + 1;
    match outcome {
        Outcome::Succeeded => Transition {
            state: JobState::Completed,
            attempts,
            interruptions,
            run_after: Duration::ZERO,
            keeps_place: false,
            exit_code: Some(0),
            last_error: None,
        },
        Outcome::Failed { exit_code, error } => {
            let retry = attempts <= max_retries;
            Transition {
                state: if retry {
                    JobState::Failed
                } else {
                    JobState::Dead
                },
                attempts,
                interruptions,
                run_after: if retry {
                    backoff.delay(attempts)
                } else {
                    Duration::ZERO
                },
                keeps_place: false,
                exit_code: *exit_code,
                last_error: Some(error.clone()),
            }
        }
        Outcome::Interrupted { reason } => {
            after_interruption_with(attempts_before, interruptions, reason, true)
        }
        Outcome::TimedOut { after } => after_attempt(
            attempts_before,
            max_retries,
            interruptions,
            &Outcome::Failed {
                exit_code: None,
                error: format!("timed out after {}", duration::human(*after)),
            },
            backoff,
        ),
        Outcome::Cancelled => Transition {
            state: JobState::Cancelled,
            attempts,
            interruptions,
            run_after: Duration::ZERO,
            keeps_place: false,
            exit_code: None,
            last_error: Some("cancelled while running".into()),
        },
    }
}

/// The transition for a job whose attempt was interrupted by a crash or lost lease.
/// Counts toward [`MAX_INTERRUPTIONS`].
pub fn after_interruption(attempts: i64, interruptions: i64, reason: &str) -> Transition {
    after_interruption_with(attempts, interruptions, reason, true)
}

/// The transition for a job a worker claimed ahead of time but gives back before
/// starting it: as if it had never been claimed.
pub fn after_release(job: &Job) -> Transition {
    Transition {
        state: JobState::Pending,
        attempts: job.attempts,
        interruptions: job.interruptions,
        run_after: Duration::ZERO,
        keeps_place: true,
        exit_code: job.exit_code,
        last_error: job.last_error.clone(),
    }
}

/// The transition for a job whose run was stopped on purpose (`worker stop --force`,
/// a second Ctrl-C): back to `pending`, nothing used up.
pub fn after_forced_stop(attempts: i64, interruptions: i64, reason: &str) -> Transition {
    after_interruption_with(attempts, interruptions, reason, false)
}

/// The transition of `dlq retry`: a `dead` job goes back to `pending`, claimable at
/// once, with its attempts and interruptions reset; its last exit code and error stay
/// until the next attempt replaces them. `job` is the job as stored (`None`: no such
/// id). Only dead jobs can be retried this way, so `dlq retry` of several ids is
/// refused whole when one of them is not dead.
pub fn after_dlq_retry(id: &str, job: Option<&Job>) -> Result<Transition, StoreError> {
    let job = job.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if job.state != JobState::Dead {
        return Err(StoreError::Conflict(format!(
            "job '{id}' is {}, not dead; only dead jobs can be retried (`queuectl dlq list` shows them)",
            job.state
        )));
    }
    Ok(started_over(job))
}

/// The transition of `retry`: like [`after_dlq_retry`], for any finished job
/// (`completed`, `dead` or `cancelled`). Its history and output stay.
pub fn after_retry(id: &str, job: Option<&Job>) -> Result<Transition, StoreError> {
    let job = job.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if !JobState::FINISHED.contains(&job.state) {
        return Err(StoreError::Conflict(format!(
            "job '{id}' is {}, not finished; only completed, dead and cancelled jobs can be retried (`queuectl cancel` stops an unfinished one)",
            job.state
        )));
    }
    Ok(started_over(job))
}

fn started_over(job: &Job) -> Transition {
    Transition {
        state: JobState::Pending,
        attempts: 0,
        interruptions: 0,
        run_after: Duration::ZERO,
        keeps_place: false,
        exit_code: job.exit_code,
        last_error: job.last_error.clone(),
    }
}

/// Why a waiting job can no longer run: a job it runs after ended `dead` or
/// `cancelled`, itself perhaps because of a job further up the chain (`origin`).
#[derive(Debug, Clone, Copy)]
pub struct DependencyEnd<'a> {
    /// The job the waiting job names in `after`.
    pub after: &'a str,
    /// The job whose end started the chain, and how it ended.
    pub origin: (&'a str, JobState),
}

/// A waiting job whose `after` job ended without completing: it is cancelled (it
/// would wait forever), saying which job it ran after and which job's end started it.
pub fn after_dependency_ended(job: &Job, cause: &DependencyEnd<'_>) -> Transition {
    let (origin, ended) = cause.origin;
    let why = if origin == cause.after {
        format!("cancelled: it runs after job '{origin}', which ended {ended}")
    } else {
        format!(
            "cancelled: it runs after job '{}', cancelled because job '{origin}' ended {ended}",
            cause.after
        )
    };
    Transition {
        state: JobState::Cancelled,
        attempts: job.attempts,
        interruptions: job.interruptions,
        run_after: Duration::ZERO,
        keeps_place: false,
        exit_code: job.exit_code,
        last_error: Some(why),
    }
}

/// What `cancel` does to one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// A `pending` or `failed` job: cancelled at once with this transition.
    Now(Transition),
    /// A `processing` job: the store marks it, and the worker running attempt
    /// `lease_token` kills its process group and reports the attempt `cancelled`.
    Requested { lease_token: i64 },
}

/// Decides `cancel` for every id at once: all or nothing. `find` looks a job up as
/// stored. Refuses (naming every offending id) when any id is unknown or its job
/// already finished; then nothing may be cancelled.
pub fn plan_cancel<'a>(
    ids: &[String],
    find: impl Fn(&str) -> Option<&'a Job>,
) -> Result<Vec<(String, Cancel)>, StoreError> {
    let mut plan = Vec::with_capacity(ids.len());
    let mut refused = Vec::new();
    for id in ids {
        match find(id) {
            None => refused.push(format!("no job with id '{id}'")),
            Some(job) => match job.state {
                JobState::Pending | JobState::Failed => plan.push((
                    id.clone(),
                    Cancel::Now(Transition {
                        state: JobState::Cancelled,
                        attempts: job.attempts,
                        interruptions: job.interruptions,
                        run_after: Duration::ZERO,
                        keeps_place: false,
                        exit_code: job.exit_code,
                        last_error: Some("cancelled before it ran again".into()),
                    }),
                )),
                JobState::Processing => plan.push((
                    id.clone(),
                    Cancel::Requested {
                        lease_token: job.lease_token,
                    },
                )),
                finished => refused.push(format!("job '{id}' is already {finished}")),
            },
        }
    }
    if refused.is_empty() {
        Ok(plan)
    } else {
        Err(StoreError::Conflict(format!(
            "{}; nothing was cancelled (`queuectl list` shows the jobs)",
            refused.join("; ")
        )))
    }
}

fn after_interruption_with(
    attempts: i64,
    interruptions: i64,
    reason: &str,
    counts: bool,
) -> Transition {
    let interruptions = interruptions + i64::from(counts);
    let dead = interruptions >= MAX_INTERRUPTIONS;
    let last_error = if dead {
        format!("interrupted {interruptions} times (last: {reason}); giving up")
    } else {
        format!("interrupted: {reason}")
    };
    Transition {
        state: if dead {
            JobState::Dead
        } else {
            JobState::Pending
        },
        attempts,
        interruptions,
        run_after: Duration::ZERO,
        keeps_place: false,
        exit_code: None,
        last_error: Some(last_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NewJob;

    fn backoff() -> Backoff {
        Backoff::new(2.0, Duration::from_secs(3600))
    }

    #[test]
    fn success_completes_and_counts_the_attempt() {
        let t = after_attempt(0, 3, 0, &Outcome::Succeeded, &backoff());
        assert_eq!(t.state, JobState::Completed);
        assert_eq!(t.attempts, 1);
        assert_eq!(t.exit_code, Some(0));
    }

    #[test]
    fn max_retries_three_means_four_runs() {
        let failed = Outcome::Failed {
            exit_code: Some(1),
            error: "exit code 1".into(),
        };
        let delays: Vec<_> = (0..3)
            .map(|before| {
                let t = after_attempt(before, 3, 0, &failed, &backoff());
                assert_eq!(t.state, JobState::Failed, "attempt {}", before + 1);
                t.run_after.as_secs()
            })
            .collect();
        assert_eq!(delays, [2, 4, 8]);
        let last = after_attempt(3, 3, 0, &failed, &backoff());
        assert_eq!(last.state, JobState::Dead);
        assert_eq!(last.attempts, 4);
        assert_eq!(last.last_error.as_deref(), Some("exit code 1"));
    }

    #[test]
    fn zero_retries_dies_after_one_run() {
        let failed = Outcome::Failed {
            exit_code: Some(127),
            error: "exit code 127".into(),
        };
        assert_eq!(
            after_attempt(0, 0, 0, &failed, &backoff()).state,
            JobState::Dead
        );
    }

    #[test]
    fn interruptions_do_not_use_attempts_until_the_limit() {
        let t = after_interruption(2, 0, "worker lost");
        assert_eq!(
            (t.state, t.attempts, t.interruptions),
            (JobState::Pending, 2, 1)
        );
        let t = after_interruption(2, MAX_INTERRUPTIONS - 1, "worker lost");
        assert_eq!(t.state, JobState::Dead);
        assert!(
            t.last_error
                .unwrap_or_default()
                .contains("interrupted 5 times")
        );
    }

    #[test]
    fn forced_stops_are_free() {
        let t = after_forced_stop(1, 4, "worker stop --force");
        assert_eq!(
            (t.state, t.attempts, t.interruptions),
            (JobState::Pending, 1, 4)
        );
    }

    fn stored(state: JobState) -> Job {
        let mut job = Job::pending(
            NewJob::new(state.as_str().into(), "sleep 9".into(), "/".into()),
            3,
            0,
        );
        job.state = state;
        job.lease_token = 7;
        job
    }

    #[test]
    fn a_timeout_is_a_failed_attempt_that_says_so() {
        let timed_out = Outcome::TimedOut {
            after: Duration::from_secs(30),
        };
        let t = after_attempt(0, 1, 0, &timed_out, &backoff());
        assert_eq!(
            (t.state, t.attempts, t.exit_code),
            (JobState::Failed, 1, None)
        );
        assert_eq!(t.last_error.as_deref(), Some("timed out after 30s"));
        assert_eq!(
            after_attempt(1, 1, 0, &timed_out, &backoff()).state,
            JobState::Dead
        );
    }

    #[test]
    fn a_cancelled_attempt_ends_the_job_and_counts() {
        let t = after_attempt(2, 5, 1, &Outcome::Cancelled, &backoff());
        assert_eq!(
            (t.state, t.attempts, t.interruptions),
            (JobState::Cancelled, 3, 1)
        );
    }

    #[test]
    fn cancel_is_all_or_nothing_and_names_every_refused_id() {
        let jobs: Vec<Job> = JobState::ALL.into_iter().map(stored).collect();
        let find = |id: &str| jobs.iter().find(|j| j.id == id);
        let ids = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let plan = plan_cancel(&ids(&["pending", "failed", "processing"]), find)
            .expect("unfinished jobs can be cancelled");
        assert!(matches!(&plan[0].1, Cancel::Now(t) if t.state == JobState::Cancelled));
        assert!(matches!(&plan[1].1, Cancel::Now(t) if t.state == JobState::Cancelled));
        assert_eq!(plan[2].1, Cancel::Requested { lease_token: 7 });
        let refused = plan_cancel(&ids(&["pending", "completed", "nope", "dead"]), find)
            .expect_err("finished and unknown ids are refused");
        let message = refused.to_string();
        for named in ["'completed'", "'nope'", "'dead'"] {
            assert!(message.contains(named), "{message}");
        }
        assert!(!message.contains("'pending'"), "{message}");
    }

    #[test]
    fn retry_takes_finished_jobs_only() {
        for state in JobState::FINISHED {
            let t = after_retry("x", Some(&stored(state))).expect("finished jobs retry");
            assert_eq!((t.state, t.attempts), (JobState::Pending, 0));
        }
        for state in [JobState::Pending, JobState::Processing, JobState::Failed] {
            assert!(after_retry("x", Some(&stored(state))).is_err());
        }
        assert!(matches!(
            after_retry("x", None),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn dlq_retry_takes_only_dead_jobs_and_resets_their_counters() {
        let mut job = Job::pending(NewJob::new("a".into(), "false".into(), "/".into()), 3, 0);
        assert!(matches!(
            after_dlq_retry("a", None),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            after_dlq_retry("a", Some(&job)),
            Err(StoreError::Conflict(_))
        ));
        job.state = JobState::Dead;
        job.attempts = 4;
        job.interruptions = 2;
        job.exit_code = Some(3);
        job.last_error = Some("exit code 3".into());
        let t = after_dlq_retry("a", Some(&job)).expect("a dead job can be retried");
        assert_eq!(
            (t.state, t.attempts, t.interruptions, t.run_after),
            (JobState::Pending, 0, 0, Duration::ZERO)
        );
        assert_eq!(
            (t.exit_code, t.last_error.as_deref()),
            (Some(3), Some("exit code 3"))
        );
    }
}
