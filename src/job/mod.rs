//! The job model and its state machine.
//!
//! This module owns the vocabulary every other layer speaks: [`JobState`], [`Job`],
//! [`NewJob`], the [`Outcome`] of one attempt as its worker saw it and the
//! [`AttemptOutcome`] the history records. Its two parts:
//! - [`transition`]: the only definition of the state transitions ([`after_attempt`],
//!   [`after_interruption`], [`after_release`], [`after_forced_stop`],
//!   [`after_dlq_retry`]). Stores persist the [`Transition`] they are handed and never
//!   decide a job's next state themselves, so SQLite and PostgreSQL cannot drift apart.
//! - [`output`]: what an attempt's output becomes when kept (capped, byte-exact).
//! - [`spec`]: what `enqueue` and `import` accept, validated once ([`JobSpec`], ids).
//! - [`options`]: the scheduling options (priority, start time, queue, `after`,
//!   unique key, environment) and their rules.
//!
//! Nothing here knows about SQL, processes or the terminal.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::InputError;

pub mod options;
pub mod output;
pub mod spec;
pub mod transition;

pub use spec::{
    JobSpec, command_from_words, generate_id, validate_command, validate_id, validate_max_retries,
};
pub use transition::{
    Cancel, DependencyEnd, Transition, after_attempt, after_dependency_ended, after_dlq_retry,
    after_forced_stop, after_interruption, after_release, after_retry, plan_cancel,
};

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
///    │  │ lease expired / │ │ exit != 0 or timed out, attempts <= max_retries
///    │  └─ force stop ────┘ ├──────────────────────────► failed ──(backoff over)──► claimable
///    │                      │ exit != 0 or timed out, attempts > max_retries
///    └──── dlq retry ─── dead ◄──────────────────────────┘
///
/// cancel: pending / failed ──► cancelled at once; processing ──(worker kills it)──► cancelled
/// retry:  completed / dead / cancelled ──► pending, attempts 0
/// ```
///
/// `failed` jobs are claimed like `pending` ones once `next_run_at` has passed.
/// `completed`, `dead` and `cancelled` are finished: nothing runs them again unless a
/// user asks (`retry`, `dlq retry`), and only they can be deleted (`clean`).
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
    /// Stopped on a user's request (`cancel`): never run again unless retried.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order (also the order `status` prints them in).
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Processing,
        JobState::Completed,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The states a job ends in: `clean` deletes only these, `retry` starts only these
    /// over.
    pub const FINISHED: [JobState; 3] = [JobState::Completed, JobState::Dead, JobState::Cancelled];

    /// The name used on the command line, in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
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
    /// How long one attempt may run before it is killed (`--timeout`, else the
    /// `job-timeout` setting when the job was enqueued); `None`: no limit.
    pub timeout_ms: Option<i64>,
    /// When the running attempt's time is up (its start plus `timeout_ms`, by the
    /// store's clock), stored at claim so it holds whichever worker runs it.
    pub deadline_at: Option<i64>,
    /// Set by `cancel` while the job runs: its worker must stop it.
    pub cancel_requested: bool,
    /// Higher runs first (-1000..=1000).
    pub priority: i64,
    pub queue: String,
    /// The start time asked for with `--run-at` or `--delay`, if any.
    pub run_at: Option<i64>,
    pub unique_key: Option<String>,
    /// Extra environment variables for the command.
    pub env: Option<BTreeMap<String, String>>,
    /// How many of the jobs it runs after have not completed yet.
    pub blocked_by: i64,
    /// The jobs it runs after (read for one job, `show` and `export`; empty in lists).
    pub after: Vec<String>,
    /// The last few KiB of the newest attempt's output.
    pub output_tail: Option<String>,
}

impl Job {
    /// A job as it stands right after enqueue: `pending`, never run.
    pub fn pending(job: NewJob, max_retries: i64, created_at: i64) -> Job {
        let run_at = job.start.resolve(created_at);
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
            next_run_at: run_at.unwrap_or(created_at),
            lease_token: 0,
            lease_expires_at: None,
            worker_id: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            last_error: None,
            timeout_ms: job.timeout_ms,
            deadline_at: None,
            cancel_requested: false,
            priority: job.priority,
            queue: job.queue,
            run_at,
            unique_key: job.unique_key,
            env: job.env,
            blocked_by: 0,
            after: job.after,
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
    /// `None`: the store's `job-timeout` setting, read in the enqueue transaction
    /// (which may be no limit either).
    pub timeout_ms: Option<i64>,
    pub priority: i64,
    pub queue: String,
    pub start: options::Start,
    /// Ids of jobs that must complete first (each listed once).
    pub after: Vec<String>,
    pub unique_key: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
}

impl NewJob {
    /// A job with every scheduling option at its default: priority 0, queue
    /// `default`, start now, no `after`, no unique key, no extra environment.
    pub fn new(id: String, command: String, cwd: String) -> NewJob {
        NewJob {
            id,
            command,
            cwd,
            max_retries: None,
            timeout_ms: None,
            priority: 0,
            queue: options::DEFAULT_QUEUE.to_owned(),
            start: options::Start::Now,
            after: Vec::new(),
            unique_key: None,
            env: None,
        }
    }
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
    /// The attempt was cut short through no fault of the command (the spool's disk
    /// was full): it does not count as an attempt, but as an interruption, like a
    /// worker that died (after `MAX_INTERRUPTIONS` the job is dead).
    Interrupted { reason: String },
    /// The attempt ran past its deadline and its process group was killed. A failed
    /// attempt, retried by the usual rules.
    TimedOut { after: Duration },
    /// A user cancelled the job while this attempt ran; its process group was killed.
    Cancelled,
}

/// How an attempt ended, as its history records it (`outcome` in the store, in
/// `show --json` and in `export` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    Interrupted,
    /// Killed at its deadline.
    TimedOut,
    /// Killed because its job was cancelled.
    Cancelled,
    /// Claimed ahead of time and given back unstarted: a store records no attempt.
    Released,
}

impl AttemptOutcome {
    /// The outcomes an attempt history can hold (a release leaves no attempt).
    pub const RECORDED: [AttemptOutcome; 5] = [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::Interrupted,
        AttemptOutcome::TimedOut,
        AttemptOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Released => "released",
        }
    }

    /// What the history records for an attempt the worker saw end with `outcome`.
    pub fn of(outcome: &Outcome) -> AttemptOutcome {
        match outcome {
            Outcome::Succeeded => AttemptOutcome::Succeeded,
            Outcome::Failed { .. } => AttemptOutcome::Failed,
            Outcome::Interrupted { .. } => AttemptOutcome::Interrupted,
            Outcome::TimedOut { .. } => AttemptOutcome::TimedOut,
            Outcome::Cancelled => AttemptOutcome::Cancelled,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
