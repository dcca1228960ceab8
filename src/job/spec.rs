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

/// How many characters a generated id has: 12 of Crockford's base32, 60 random bits.
pub const GENERATED_ID_LEN: usize = 12;

/// Crockford's base32 alphabet, lowercase: digits and letters without `i`, `l`, `o`
/// and `u`, so an id read aloud or copied by hand has no look-alike characters.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id: [`GENERATED_ID_LEN`] lowercase Crockford base32 characters of 60 random
/// bits (`7k2xq9rmb4td`), from the operating system's random source.
///
/// Random rather than time-ordered, so that jobs enqueued together differ from their
/// first character and a few typed characters name one (`queuectl show 7k2`). Nothing
/// sorts by id: stores order jobs by their `seq`. Two ids collide with probability
/// about n²/2⁶¹ for n ids in one store (10⁻⁶ at a million jobs kept); a collision is
/// refused by the store's unique id like any duplicate, and nothing is enqueued.
pub fn generate_id() -> String {
    let bits = getrandom::u64().unwrap_or_else(|_| fallback_random());
    (0..GENERATED_ID_LEN)
        .map(|i| {
            let shift = 5 * (GENERATED_ID_LEN - 1 - i);
            char::from(CROCKFORD[((bits >> shift) & 31) as usize])
        })
        .collect()
}

/// Random-looking bits when the operating system cannot give any (it always can on
/// Linux 3.17+; this only keeps `enqueue` from panicking on a broken sandbox): the
/// clock, the pid and a counter, mixed by SplitMix64's finaliser.
fn fallback_random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The command of `enqueue -- WORDS` (and `cron add ... -- WORDS`): one word is a
/// shell command line as written (`-- 'make && deploy'`); two or more are each
/// shell-quoted and joined, so the job runs exactly the argument vector the user's
/// shell passed, like `nohup`, `timeout` and `xargs` (`-- touch "my file"` stores
/// `touch 'my file'`). `None` when there are no words.
pub fn command_from_words(words: &[String]) -> Result<Option<String>, InputError> {
    match words {
        [] => Ok(None),
        [line] => Ok(Some(line.clone())),
        words => shlex::try_join(words.iter().map(String::as_str))
            .map(Some)
            .map_err(|_| {
                InputError::Invalid(
                    "a word of the command contains a NUL byte, which no shell can run; remove it"
                        .into(),
                )
            }),
    }
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
    if command.len() > MAX_COMMAND_BYTES {
        return Err(InputError::Invalid(format!(
            "the command is {} bytes, more than the {MAX_COMMAND_BYTES} the kernel lets one \
             argument of `sh -c` hold; put it in a script file and enqueue `sh script.sh`",
            command.len()
        )));
    }
    Ok(command.to_owned())
}

/// The longest command that can run: it reaches `sh -c` as one argument, and Linux
/// refuses (E2BIG) an argument of `MAX_ARG_STRLEN` (32 pages, 128 KiB) or more,
/// counting its NUL. Longer commands would fail every attempt and go dead, so they
/// are refused at enqueue instead.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024 - 1;

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
        assert_eq!(job.id.len(), GENERATED_ID_LEN);
    }

    #[test]
    fn generated_ids_are_short_crockford_base32_and_differ_from_the_start() {
        let ids: Vec<String> = (0..1000).map(|_| generate_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), GENERATED_ID_LEN, "{id}");
            assert!(id.bytes().all(|b| CROCKFORD.contains(&b)), "{id}");
            assert!(validate_id(id).is_ok(), "{id}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "1000 random ids are all different"
        );
        // Random from the first character: 1000 ids use most of the 32 symbols
        // there (a time-ordered id would start the same for all of them).
        let firsts: std::collections::HashSet<u8> = ids.iter().map(|id| id.as_bytes()[0]).collect();
        assert!(firsts.len() >= 24, "first characters: {firsts:?}");
    }

    #[test]
    fn the_fallback_bits_change_on_every_call() {
        assert_ne!(fallback_random(), fallback_random());
    }

    #[test]
    fn words_become_one_command_quoted_when_there_are_several() {
        let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
        assert_eq!(command_from_words(&[]).ok(), Some(None));
        assert_eq!(
            command_from_words(&words(&["make && deploy"]))
                .ok()
                .flatten()
                .as_deref(),
            Some("make && deploy"),
            "one word is a shell command line"
        );
        assert_eq!(
            command_from_words(&words(&["touch", "my file"]))
                .ok()
                .flatten()
                .as_deref(),
            Some("touch 'my file'")
        );
        assert_eq!(
            command_from_words(&words(&["echo", "hi"]))
                .ok()
                .flatten()
                .as_deref(),
            Some("echo hi"),
            "plain words stay as typed"
        );
        let quoted = command_from_words(&words(&["echo", "it's", "$HOME", ""]))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(
            shlex::split(&quoted),
            Some(words(&["echo", "it's", "$HOME", ""]))
        );
        assert!(command_from_words(&words(&["echo", "a\u{0}b"])).is_err());
    }
}
