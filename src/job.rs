//! The job model and its state machine.
//!
//! This module owns the vocabulary every other layer speaks: [`JobState`], [`Job`],
//! [`NewJob`], the [`Outcome`] of one attempt as its worker saw it and the
//! [`AttemptOutcome`] the history records. It also owns the only definition of the
//! state transitions ([`after_attempt`], [`after_interruption`], [`after_release`],
//! [`after_forced_stop`], [`after_dlq_retry`]): stores persist the
//! [`Transition`] they are handed and never decide a job's next state themselves, so
//! SQLite and PostgreSQL cannot drift apart. Nothing here knows about SQL, processes or
//! the terminal.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::error::{InputError, StoreError};

/// How many times a job may be interrupted (its worker vanished, its lease expired)
/// before it is declared dead. Interruptions are not the command's fault, so they do
/// not use up attempts, but a command that kills its worker every time must not loop
/// forever.
pub const MAX_INTERRUPTIONS: i64 = 5;

/// The largest `max_retries` a job may ask for. Beyond this a typo (an extra zero) is
/// more likely than intent.
pub const MAX_RETRIES_LIMIT: i64 = 1000;

/// How much of a command's output is kept with the job for `show`.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// Where a job is in its life.
///
/// ```text
///            claim                 exit 0
/// pending ──────────► processing ─────────► completed
///    ▲  ▲                 │ │
///    │  │ lease expired / │ │ exit != 0, attempts <= max_retries
///    │  └─ force stop ────┘ ├──────────────────────────► failed ──(backoff over)──► claimable
///    │                      │ exit != 0, attempts > max_retries
///    └──── dlq retry ─── dead ◄──────────────────────────┘
/// ```
///
/// `failed` jobs are claimed like `pending` ones once `next_run_at` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// A worker holds the lease and runs the command.
    Processing,
    /// The command exited 0.
    Completed,
    /// The command failed; the job waits out its backoff before the next attempt.
    Failed,
    /// Attempts (or interruptions) exhausted: the dead letter queue.
    Dead,
}

impl JobState {
    /// Every state, in lifecycle order (also the order `status` prints them in).
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Processing,
        JobState::Completed,
        JobState::Failed,
        JobState::Dead,
    ];

    /// The name used on the command line, in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// Whether the job will still run without anyone's help.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            JobState::Pending | JobState::Processing | JobState::Failed
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| InputError::UnknownState(s.to_owned()))
    }
}

/// A job as stored. Times are Unix milliseconds (UTC); the CLI renders them as RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub command: String,
    /// The directory `enqueue` ran in; the command runs there.
    pub cwd: String,
    pub state: JobState,
    /// Finished attempts (interrupted ones are counted in `interruptions` instead).
    pub attempts: i64,
    pub max_retries: i64,
    pub interruptions: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When a `pending` or `failed` job becomes claimable.
    pub next_run_at: i64,
    /// The fencing token of the newest claim; every write about a run carries it.
    pub lease_token: i64,
    pub lease_expires_at: Option<i64>,
    /// The worker running it, or the last one that did.
    pub worker_id: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub last_error: Option<String>,
    /// The last few KiB of the newest attempt's output.
    pub output_tail: Option<String>,
}

impl Job {
    /// A job as it stands right after enqueue: `pending`, never run.
    pub fn pending(job: NewJob, max_retries: i64, created_at: i64) -> Job {
        Job {
            id: job.id,
            command: job.command,
            cwd: job.cwd,
            state: JobState::Pending,
            attempts: 0,
            max_retries,
            interruptions: 0,
            created_at,
            updated_at: created_at,
            next_run_at: created_at,
            lease_token: 0,
            lease_expires_at: None,
            worker_id: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            last_error: None,
            output_tail: None,
        }
    }
}

/// A job on its way into the store, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub id: String,
    pub command: String,
    pub cwd: String,
    /// `None`: the store's `max-retries` setting, read in the enqueue transaction.
    pub max_retries: Option<i64>,
}

/// What `enqueue` accepts as JSON: exactly these fields, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub id: Option<String>,
    pub command: String,
    pub max_retries: Option<i64>,
}

impl JobSpec {
    /// Parses one JSON job object, as given to `enqueue` or as a line of `enqueue --file`.
    pub fn from_json(text: &str) -> Result<JobSpec, InputError> {
        if text.contains('\0') {
            return Err(InputError::Invalid(
                "the job JSON contains a NUL byte".into(),
            ));
        }
        serde_json::from_str(text).map_err(|e| InputError::Json(e.to_string()))
    }

    /// Checks every field and fills in a generated id and the caller's directory.
    pub fn validate(self, cwd: &str) -> Result<NewJob, InputError> {
        let id = match self.id {
            Some(id) => validate_id(&id)?,
            None => generate_id(),
        };
        let command = validate_command(&self.command)?;
        let max_retries = self.max_retries.map(validate_max_retries).transpose()?;
        Ok(NewJob {
            id,
            command,
            cwd: cwd.to_owned(),
            max_retries,
        })
    }
}

/// A new id: a UUIDv7, so generated ids are unique across processes and machines
/// and sort by creation time.
pub fn generate_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// User-chosen ids are kept verbatim, so they only need to be printable and short.
pub fn validate_id(id: &str) -> Result<String, InputError> {
    if id.is_empty() {
        return Err(InputError::Invalid(
            "the job id is empty; give a non-empty id or leave it out to get one generated".into(),
        ));
    }
    if id.len() > 200 {
        return Err(InputError::Invalid(format!(
            "the job id is {} bytes long; use at most 200",
            id.len()
        )));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(InputError::Invalid(
            "the job id contains a control character (NUL, newline, tab, ...); use printable characters only"
                .into(),
        ));
    }
    if id.trim() != id {
        return Err(InputError::Invalid(
            "the job id starts or ends with whitespace; remove it".into(),
        ));
    }
    Ok(id.to_owned())
}

pub fn validate_command(command: &str) -> Result<String, InputError> {
    if command.trim().is_empty() {
        return Err(InputError::Invalid(
            "the command is empty; give the shell command to run".into(),
        ));
    }
    if command.contains('\0') {
        return Err(InputError::Invalid(
            "the command contains a NUL byte, which no shell can run; remove it".into(),
        ));
    }
    Ok(command.to_owned())
}

pub fn validate_max_retries(n: i64) -> Result<i64, InputError> {
    if !(0..=MAX_RETRIES_LIMIT).contains(&n) {
        return Err(InputError::Invalid(format!(
            "max_retries must be between 0 and {MAX_RETRIES_LIMIT}, got {n}"
        )));
    }
    Ok(n)
}

/// How one attempt ended, as seen by the worker that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited 0.
    Succeeded,
    /// The command ran and failed, or could not be started.
    Failed {
        exit_code: Option<i64>,
        error: String,
    },
    /// The attempt was cut short through no fault of the command (worker forced to
    /// stop, lease lost): it does not count as an attempt.
    Interrupted { reason: String },
}

/// How an attempt ended, as its history records it (`outcome` in the store, in
/// `show --json` and in `export` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    Interrupted,
    /// Claimed ahead of time and given back unstarted: a store records no attempt.
    Released,
}

impl AttemptOutcome {
    /// The outcomes an attempt history can hold (a release leaves no attempt).
    pub const RECORDED: [AttemptOutcome; 3] = [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::Released => "released",
        }
    }

    /// What the history records for an attempt the worker saw end with `outcome`.
    pub fn of(outcome: &Outcome) -> AttemptOutcome {
        match outcome {
            Outcome::Succeeded => AttemptOutcome::Succeeded,
            Outcome::Failed { .. } => AttemptOutcome::Failed,
            Outcome::Interrupted { .. } => AttemptOutcome::Interrupted,
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttemptOutcome {
    type Err = InputError;

    /// Parses a recorded outcome; `released` is never recorded, so it is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttemptOutcome::RECORDED
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AttemptOutcome::RECORDED
                    .iter()
                    .map(|o| o.as_str())
                    .collect();
                InputError::Invalid(format!(
                    "unknown attempt outcome '{s}'; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

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
                exit_code: *exit_code,
                last_error: Some(error.clone()),
            }
        }
        Outcome::Interrupted { reason } => {
            after_interruption_with(attempts_before, interruptions, reason, false)
        }
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
/// id). Only dead jobs can be retried, so `dlq retry` of several ids is refused whole
/// when one of them is not dead.
pub fn after_dlq_retry(id: &str, job: Option<&Job>) -> Result<Transition, StoreError> {
    let job = job.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if job.state != JobState::Dead {
        return Err(StoreError::Conflict(format!(
            "job '{id}' is {}, not dead; only dead jobs can be retried (`queuectl dlq list` shows them)",
            job.state
        )));
    }
    Ok(Transition {
        state: JobState::Pending,
        attempts: 0,
        interruptions: 0,
        run_after: Duration::ZERO,
        exit_code: job.exit_code,
        last_error: job.last_error.clone(),
    })
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
        exit_code: None,
        last_error: Some(last_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn dlq_retry_takes_only_dead_jobs_and_resets_their_counters() {
        let mut job = Job::pending(
            NewJob {
                id: "a".into(),
                command: "false".into(),
                cwd: "/".into(),
                max_retries: None,
            },
            3,
            0,
        );
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

    #[test]
    fn attempt_outcomes_parse_only_what_a_history_holds() {
        for outcome in AttemptOutcome::RECORDED {
            assert_eq!(
                outcome.as_str().parse::<AttemptOutcome>().ok(),
                Some(outcome)
            );
        }
        assert!("released".parse::<AttemptOutcome>().is_err());
        assert!("ok".parse::<AttemptOutcome>().is_err());
    }

    #[test]
    fn states_parse_and_reject_unknown_words() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().ok(), Some(state));
        }
        assert!("running".parse::<JobState>().is_err());
    }

    #[test]
    fn job_specs_reject_bad_input() {
        assert!(JobSpec::from_json(r#"{"command":"x","extra":1}"#).is_err());
        assert!(JobSpec::from_json(r#"{"command":5}"#).is_err());
        assert!(JobSpec::from_json(r#"{"id":"a"}"#).is_err());
        assert!(JobSpec::from_json(r#"{"command":"x","max_retries":"3"}"#).is_err());
        assert!(JobSpec::from_json("[1]").is_err());
        let spec = JobSpec::from_json(r#"{"command":"  ","id":"a"}"#).expect("parses");
        assert!(spec.validate("/").is_err());
        let spec = JobSpec::from_json(r#"{"command":"x","max_retries":-1}"#).expect("parses");
        assert!(spec.validate("/").is_err());
        let spec = JobSpec::from_json(r#"{"command":"x","id":"a\nb"}"#).expect("parses");
        assert!(spec.validate("/").is_err());
    }

    #[test]
    fn job_specs_fill_defaults() {
        let job = JobSpec::from_json(r#"{"command":"echo hi"}"#)
            .and_then(|s| s.validate("/tmp"))
            .expect("valid");
        assert_eq!((job.max_retries, job.cwd.as_str()), (None, "/tmp"));
        assert_eq!(job.id.len(), 36);
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let ids: Vec<String> = (0..100).map(|_| generate_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
