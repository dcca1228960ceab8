//! Recurring jobs (`queuectl cron`): what an entry is made of and what each of its
//! runs becomes. The core of the feature, free of SQL and terminals:
//! - [`schedule`]: cron expressions in a time zone, and the next tick after an instant;
//! - here: entry names, the job every run is enqueued from ([`CronJob`], stored as
//!   job JSON), and the job of one run ([`run_job`]) with its unique key
//!   `NAME@TICK` ([`run_key`]).
//!
//! Invariants: a stored job is JSON that [`JobSpec`] accepts, checked when the entry
//! is added, with its `cwd` always set (the directory `cron add` ran in unless
//! given), so a run means the same on every worker. A run's unique key names the
//! entry and the tick (RFC 3339 UTC), so two workers can never both create the run of
//! one tick while it is unfinished, whatever the clocks say.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::InputError;
use crate::job::{JobSpec, NewJob};

pub mod schedule;

pub use schedule::{CronSchedule, SecondsField, local_zone_name};

/// The environment variable that lets `cron add` take a leading seconds field
/// (six fields): `QUEUECTL_TEST_CRON_SECONDS=1`. For tests, which cannot wait a
/// minute per tick.
pub const TEST_SECONDS_VAR: &str = "QUEUECTL_TEST_CRON_SECONDS";

/// Whether [`TEST_SECONDS_VAR`] is set to `1` in this process.
pub fn seconds_field_from_env() -> SecondsField {
    match std::env::var(TEST_SECONDS_VAR) {
        Ok(value) if value == "1" => SecondsField::Allowed,
        _ => SecondsField::Refused,
    }
}

/// Entry names: `[A-Za-z0-9_.-]{1,64}` like queue names, so they are safe in every
/// output and in the unique keys of their runs.
pub fn validate_name(name: &str) -> Result<String, InputError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(InputError::Invalid(format!(
            "bad cron entry name '{}'; use 1 to 64 of the characters A-Z a-z 0-9 _ . -",
            name.escape_debug()
        )));
    }
    Ok(name.to_owned())
}

/// The job every run of an entry is enqueued from: the options `cron add` takes,
/// under the names of the job JSON fields, so it is stored as job JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CronJob {
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i64>,
    /// As given (`30s`, `5m`): checked by [`JobSpec::validate`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    pub cwd: String,
}

impl CronJob {
    /// The job JSON to store, after checking it as `enqueue` would check it, so a
    /// bad option is refused before anything is stored.
    pub fn to_json(&self) -> Result<String, InputError> {
        let text = serde_json::to_string(self)
            .map_err(|e| InputError::Invalid(format!("cannot encode the job: {e}")))?;
        JobSpec::from_json(&text)?.validate(&self.cwd)?;
        Ok(text)
    }
}

/// The unique key of entry `name`'s run for `tick_ms`: `NAME@2026-12-01T09:00:00Z`.
pub fn run_key(name: &str, tick_ms: i64) -> String {
    let tick = jiff::Timestamp::from_millisecond(tick_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| tick_ms.to_string());
    format!("{name}@{tick}")
}

/// The job of entry `name`'s run for `tick_ms`, from the entry's stored job JSON:
/// a new id, the unique key [`run_key`], everything else as stored.
pub fn run_job(name: &str, tick_ms: i64, job_json: &str) -> Result<NewJob, InputError> {
    let mut spec = JobSpec::from_json(job_json)?;
    spec.id = None;
    spec.unique_key = Some(run_key(name, tick_ms));
    // Every stored job has its cwd; "/" only stands in for a hand-edited one.
    spec.validate("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_like_queue_names() {
        assert!(validate_name("nightly-backup.v2_x").is_ok());
        for bad in ["", "a b", "a@b", "ü", "a\nb", &"n".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn run_keys_name_the_tick_in_utc() {
        assert_eq!(
            run_key("nightly", 1_796_115_600_000),
            "nightly@2026-12-01T09:00:00Z"
        );
    }

    #[test]
    fn a_stored_job_makes_each_run() {
        let job = CronJob {
            command: "echo hi".into(),
            priority: Some(7),
            queue: Some("crons".into()),
            timeout: Some("30s".into()),
            env: Some(BTreeMap::from([("A".into(), "1".into())])),
            cwd: "/srv".into(),
            ..CronJob::default()
        };
        let json = job.to_json().expect("valid");
        assert_eq!(
            json,
            r#"{"command":"echo hi","timeout":"30s","priority":7,"queue":"crons","env":{"A":"1"},"cwd":"/srv"}"#
        );
        let run = run_job("nightly", 1_796_115_600_000, &json).expect("valid");
        assert_eq!(
            run.unique_key.as_deref(),
            Some("nightly@2026-12-01T09:00:00Z")
        );
        assert_eq!((run.priority, run.queue.as_str()), (7, "crons"));
        assert_eq!((run.cwd.as_str(), run.timeout_ms), ("/srv", Some(30_000)));
        let again = run_job("nightly", 1_796_115_600_000, &json).expect("valid");
        assert_ne!(run.id, again.id, "every run gets an id of its own");
    }

    #[test]
    fn bad_options_are_refused_before_storing() {
        let bad = |job: CronJob| job.to_json().expect_err("refused").to_string();
        let base = CronJob {
            command: "true".into(),
            cwd: "/".into(),
            ..CronJob::default()
        };
        let priority = bad(CronJob {
            priority: Some(5000),
            ..base.clone()
        });
        assert!(priority.contains("priority"), "{priority}");
        assert!(
            bad(CronJob {
                queue: Some("a b".into()),
                ..base.clone()
            })
            .contains("queue")
        );
        assert!(
            bad(CronJob {
                command: " ".into(),
                ..base.clone()
            })
            .contains("command")
        );
        assert!(
            bad(CronJob {
                cwd: "relative".into(),
                ..base
            })
            .contains("cwd")
        );
    }
}
