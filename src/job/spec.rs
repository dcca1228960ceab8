//! What `enqueue` and `import` accept: the job JSON ([`JobSpec`]) and the rules for
//! ids, commands and retry counts, checked before anything reaches a store so bad
//! input never changes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::NewJob;
use super::options;
use crate::duration;
use crate::error::InputError;
use crate::job::MAX_RETRIES_LIMIT;

/// What `enqueue` accepts as JSON: exactly these fields, nothing else. The flags of
/// `enqueue` fill the same struct, so both forms obey the same rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub id: Option<String>,
    pub command: String,
    pub max_retries: Option<i64>,
    /// Seconds (`30`, `0.5`) or a duration with units (`"30s"`, `"5m"`).
    pub timeout: Option<DurationSpec>,
    pub priority: Option<i64>,
    /// RFC 3339 with an offset, or a local `YYYY-MM-DD HH:MM[:SS]`.
    pub run_at: Option<String>,
    pub delay: Option<DurationSpec>,
    pub queue: Option<String>,
    #[serde(default)]
    pub after: Vec<String>,
    pub unique_key: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    /// Default: the directory `enqueue` ran in.
    pub cwd: Option<String>,
}

/// A duration in job JSON: a number of seconds or a string with units.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

/// The longest `timeout` a job may ask for; beyond it a typo is more likely.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 86_400);

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
        let timeout_ms = self.timeout.map(validate_timeout).transpose()?;
        let run_at = self
            .run_at
            .as_deref()
            .map(options::parse_run_at)
            .transpose()?;
        let delay = self.delay.map(validate_delay).transpose()?;
        let cwd = match self.cwd {
            Some(dir) => options::validate_cwd(&dir)?,
            None => cwd.to_owned(),
        };
        Ok(NewJob {
            id,
            command,
            cwd,
            max_retries,
            timeout_ms,
            priority: self
                .priority
                .map(options::validate_priority)
                .transpose()?
                .unwrap_or(0),
            queue: match self.queue {
                Some(queue) => options::validate_queue(&queue)?,
                None => options::DEFAULT_QUEUE.to_owned(),
            },
            start: options::start(run_at, delay)?,
            after: options::validate_after(self.after)?,
            unique_key: self
                .unique_key
                .as_deref()
                .map(options::validate_unique_key)
                .transpose()?,
            env: self.env.map(options::validate_env).transpose()?,
        })
    }
}

/// Checks a job's `delay` (from `--delay` or JSON).
fn validate_delay(spec: DurationSpec) -> Result<Duration, InputError> {
    match spec {
        DurationSpec::Seconds(secs) => options::parse_delay(&secs.to_string()),
        DurationSpec::Text(text) => options::parse_delay(&text),
    }
}

/// Checks a job's `timeout` (from `--timeout` or JSON) and returns it in milliseconds.
pub fn validate_timeout(spec: DurationSpec) -> Result<i64, InputError> {
    let (text, parsed) = match spec {
        DurationSpec::Seconds(secs) => (
            secs.to_string(),
            (0.0..1e12)
                .contains(&secs)
                .then(|| Duration::from_secs_f64(secs)),
        ),
        DurationSpec::Text(text) => {
            let parsed = duration::parse(&text);
            (text, parsed)
        }
    };
    let timeout = parsed.ok_or_else(|| {
        InputError::Invalid(format!("bad timeout: {}", duration::expected(&text)))
    })?;
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(InputError::Invalid(format!(
            "bad timeout: {text} is outside 1ms..=30d; give a duration such as 30s or 2h"
        )));
    }
    Ok(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(job.timeout_ms, None);
        let job = JobSpec::from_json(r#"{"command":"x","timeout":"1m"}"#)
            .and_then(|s| s.validate("/"))
            .expect("valid");
        assert_eq!(job.timeout_ms, Some(60_000));
        let job = JobSpec::from_json(r#"{"command":"x","timeout":0.5}"#)
            .and_then(|s| s.validate("/"))
            .expect("valid");
        assert_eq!(job.timeout_ms, Some(500));
        for bad in [r#""soon""#, "-1", "0", r#""31d""#] {
            let spec = JobSpec::from_json(&format!(r#"{{"command":"x","timeout":{bad}}}"#))
                .expect("parses");
            assert!(spec.validate("/").is_err(), "timeout {bad}");
        }
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
