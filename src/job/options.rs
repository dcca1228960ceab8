//! The scheduling options of a job (issue 11): priority, when it may start, its
//! queue, the jobs it runs after, its unique key and its environment. Each is
//! checked here once, for `enqueue` flags, job JSON, `--file` lines, `import` and
//! `cron add` alike, so every way in refuses the same input with the same words.
//!
//! Times are Unix milliseconds. A `--run-at` time is resolved here (it names an
//! instant); a `--delay` stays a duration until the store adds it to its own clock,
//! so a job delayed 10 s on PostgreSQL waits 10 s by the database's clock however
//! skewed the enqueueing host's clock is.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{JobState, NewJob};
use crate::duration;
use crate::error::InputError;

/// Priorities run from this to its negation; beyond that a typo is more likely.
pub const MAX_PRIORITY: i64 = 1000;

/// The queue of jobs enqueued without one.
pub const DEFAULT_QUEUE: &str = "default";

/// The longest delay a job may ask for (beyond it a typo is more likely).
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// How many jobs one job may run after.
pub const MAX_AFTER: usize = 100;

/// When a job may first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// At this instant (Unix ms); a past instant means now.
    At(i64),
    /// This long after the store commits the enqueue, by the store's clock.
    After(Duration),
}

impl Start {
    /// When the job may start, for a store whose clock reads `now`; `None` for a
    /// job that may start at once (it then runs in enqueue order at its priority).
    pub fn resolve(self, now: i64) -> Option<i64> {
        match self {
            Start::Now => None,
            Start::At(at) => Some(at),
            Start::After(delay) => Some(now.saturating_add(whole_millis(delay))),
        }
    }
}

/// A duration in whole milliseconds (saturating).
fn whole_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How a new job enters the store, given the states of the jobs it runs after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// `pending`, or `cancelled` when a job it runs after already ended without
    /// completing (it could never run).
    pub state: JobState,
    /// When it may start (enqueue time, or its `run_at`).
    pub next_run_at: i64,
    /// The start time asked for, if any.
    pub run_at: Option<i64>,
    /// How many jobs it runs after have not completed yet.
    pub blocked_by: i64,
    pub last_error: Option<String>,
}

/// Decides how `job`, enqueued at `now` by the store's clock, enters the store;
/// `after` holds the current state of each job it runs after.
pub fn admission(job: &NewJob, now: i64, after: &[(&str, JobState)]) -> Admission {
    let run_at = job.start.resolve(now);
    let ended = after
        .iter()
        .find(|(_, state)| matches!(state, JobState::Dead | JobState::Cancelled));
    let blocked_by = after
        .iter()
        .filter(|(_, state)| *state != JobState::Completed)
        .count();
    Admission {
        state: if ended.is_some() {
            JobState::Cancelled
        } else {
            JobState::Pending
        },
        next_run_at: run_at.unwrap_or(now),
        run_at,
        blocked_by: if ended.is_some() {
            0
        } else {
            i64::try_from(blocked_by).unwrap_or(i64::MAX)
        },
        last_error: ended
            .map(|(id, state)| format!("cancelled: it runs after job '{id}', which ended {state}")),
    }
}

pub fn validate_priority(priority: i64) -> Result<i64, InputError> {
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(InputError::Invalid(format!(
            "priority {priority} is outside -{MAX_PRIORITY}..={MAX_PRIORITY}; give an integer in that range (higher runs first)"
        )));
    }
    Ok(priority)
}

/// Queue names: `[A-Za-z0-9_.-]{1,64}`, so they are safe in every output and URL.
pub fn validate_queue(name: &str) -> Result<String, InputError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(InputError::Invalid(format!(
            "bad queue name '{}'; use 1 to 64 of the characters A-Z a-z 0-9 _ . -",
            name.escape_debug()
        )));
    }
    Ok(name.to_owned())
}

/// Parses `--run-at`: RFC 3339 with an offset (`2026-12-01T09:00:00Z`,
/// `2026-12-01T09:00:00+01:00`) or a local `YYYY-MM-DD HH:MM[:SS]` in the time zone
/// of the machine running `enqueue`. Returns Unix ms.
pub fn parse_run_at(text: &str) -> Result<i64, InputError> {
    let text = text.trim();
    let instant = if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        Some(ts)
    } else {
        parse_local(text)
    };
    let Some(instant) = instant else {
        return Err(InputError::Invalid(format!(
            "bad run_at '{}'; give RFC 3339 with an offset (2026-12-01T09:00:00Z) or a local time (2026-12-01 09:00)",
            text.escape_debug()
        )));
    };
    Ok(instant.as_millisecond())
}

/// A local civil time with minutes or seconds, in the system time zone.
fn parse_local(text: &str) -> Option<jiff::Timestamp> {
    let (date, time) = text.split_once([' ', 'T'])?;
    let colons = time.matches(':').count();
    if !(1..=2).contains(&colons) || date.len() != 10 {
        return None;
    }
    let full = if colons == 1 {
        format!("{date}T{time}:00")
    } else {
        format!("{date}T{time}")
    };
    let civil: jiff::civil::DateTime = full.parse().ok()?;
    jiff::tz::TimeZone::system().to_timestamp(civil).ok()
}

/// Parses `--delay` or JSON `"delay"` (already read as text).
pub fn parse_delay(text: &str) -> Result<Duration, InputError> {
    let delay = duration::parse(text)
        .ok_or_else(|| InputError::Invalid(format!("bad delay: {}", duration::expected(text))))?;
    if delay > MAX_DELAY {
        return Err(InputError::Invalid(format!(
            "delay {text} is longer than 10 years; give a shorter one"
        )));
    }
    Ok(delay)
}

/// Combines `run_at` and `delay`, which exclude each other.
pub fn start(run_at: Option<i64>, delay: Option<Duration>) -> Result<Start, InputError> {
    match (run_at, delay) {
        (Some(_), Some(_)) => Err(InputError::Invalid(
            "give run_at or delay, not both; --run-at names a time, --delay a wait from now".into(),
        )),
        (Some(at), None) => Ok(Start::At(at)),
        (None, Some(delay)) => Ok(Start::After(delay)),
        (None, None) => Ok(Start::Now),
    }
}

/// Unique keys are free text, but printable and short like ids.
pub fn validate_unique_key(key: &str) -> Result<String, InputError> {
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(InputError::Invalid(
            "bad unique key; give 1 to 200 bytes of printable text".into(),
        ));
    }
    Ok(key.to_owned())
}

/// The ids a job runs after: each must be a valid id, listed once.
pub fn validate_after(ids: Vec<String>) -> Result<Vec<String>, InputError> {
    if ids.len() > MAX_AFTER {
        return Err(InputError::Invalid(format!(
            "a job may run after at most {MAX_AFTER} jobs, got {}",
            ids.len()
        )));
    }
    let mut seen = Vec::with_capacity(ids.len());
    for id in ids {
        let id = super::validate_id(&id)?;
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    Ok(seen)
}

/// Parses one `--env KEY=VALUE`.
pub fn parse_env_pair(text: &str) -> Result<(String, String), InputError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(InputError::Invalid(format!(
            "bad --env '{}'; write KEY=VALUE with a variable name before the =",
            text.escape_debug()
        ))),
    }
}

/// Environment variable names a shell can use, values without NUL.
pub fn validate_env(env: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, InputError> {
    for (key, value) in &env {
        let mut chars = key.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(InputError::Invalid(format!(
                "bad environment variable name '{}'; use letters, digits and _, not starting with a digit",
                key.escape_debug()
            )));
        }
        if value.contains('\0') {
            return Err(InputError::Invalid(format!(
                "the value of environment variable {key} contains a NUL byte; remove it"
            )));
        }
    }
    Ok(env)
}

/// A job's working directory: an absolute path without NUL. Whether it exists is
/// the worker's business: it may be on another machine.
pub fn validate_cwd(dir: &str) -> Result<String, InputError> {
    if !dir.starts_with('/') || dir.contains('\0') {
        return Err(InputError::Invalid(format!(
            "bad cwd '{}'; give an absolute directory path",
            dir.escape_debug()
        )));
    }
    Ok(dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_and_queues_are_bounded() {
        assert!(validate_priority(1000).is_ok());
        assert!(validate_priority(-1000).is_ok());
        assert!(validate_priority(1001).is_err());
        assert!(validate_queue("batch.v2_x-1").is_ok());
        for bad in ["", "a b", "ü", &"q".repeat(65)] {
            assert!(validate_queue(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_at_takes_rfc3339_or_local_time() {
        assert_eq!(
            parse_run_at("2026-01-01T00:00:00Z").ok(),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_run_at("2026-01-01T01:00:00+01:00").ok(),
            Some(1_767_225_600_000)
        );
        assert!(parse_run_at("2026-01-01 00:00").is_ok());
        assert!(parse_run_at("2026-01-01 00:00:30").is_ok());
        assert!(parse_run_at("tomorrow").is_err());
        assert!(parse_run_at("2099-01-02T03:04:05Z").is_ok());
    }

    #[test]
    fn run_at_and_delay_exclude_each_other() {
        let delay = Some(Duration::from_secs(5));
        assert!(start(Some(1), delay).is_err());
        assert_eq!(
            start(None, delay).ok(),
            Some(Start::After(Duration::from_secs(5)))
        );
        assert_eq!(
            Start::After(Duration::from_secs(5)).resolve(1000),
            Some(6000)
        );
        assert_eq!(Start::Now.resolve(1000), None);
    }

    #[test]
    fn env_names_and_after_lists_are_checked() {
        assert!(parse_env_pair("A=b=c").is_ok_and(|(k, v)| k == "A" && v == "b=c"));
        assert!(parse_env_pair("A").is_err());
        let env = |k: &str| BTreeMap::from([(k.to_owned(), "v".to_owned())]);
        assert!(validate_env(env("_OK1")).is_ok());
        assert!(validate_env(env("1BAD")).is_err());
        assert!(validate_env(env("A-B")).is_err());
        let after = validate_after(vec!["a".into(), "b".into(), "a".into()]);
        assert_eq!(after.ok(), Some(vec!["a".to_owned(), "b".to_owned()]));
    }
}
