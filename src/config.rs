//! Queue settings that every worker must agree on, persisted in the store.
//!
//! Each key is defined once in [`KEYS`] with its default and its parser, so `config
//! set`, `config get`, `config list` and the workers all read the same definition.
//! Values are stored as the canonical text the parser produced, so a stored value is
//! always valid. Durations are given and shown in seconds (decimals allowed); `1h`,
//! `5m`, `30s` and `500ms` are accepted on input too.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::duration;
use crate::error::InputError;
use crate::job::{MAX_RETRIES_LIMIT, validate_max_retries};

/// One setting: its name, default and what it means.
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Retries,
    Base,
    Seconds {
        min: f64,
        max: f64,
    },
    /// Seconds, or `none` for no limit.
    SecondsOrNone {
        min: f64,
        max: f64,
    },
    /// A size in bytes; `KiB`, `MiB`, `GiB` (and `KB`, `MB`, `GB`, `K`, `M`, `G`:
    /// binary too) accepted on input.
    Bytes {
        min: u64,
        max: u64,
    },
}

/// Every setting queuectl knows.
pub const KEYS: [Key; 9] = [
    Key {
        name: "max-retries",
        default: "3",
        help: "retries after the first run, copied into each job at enqueue",
        kind: Kind::Retries,
    },
    Key {
        name: "backoff-base",
        default: "2",
        help: "retry delay is backoff-base ^ attempts seconds, read when a failure happens",
        kind: Kind::Base,
    },
    Key {
        name: "backoff-max",
        default: "3600",
        help: "cap on the retry delay, in seconds",
        kind: Kind::Seconds {
            min: 0.0,
            max: 365.0 * 86400.0,
        },
    },
    Key {
        name: "lease-timeout",
        default: "10",
        help: "seconds without a heartbeat before a running job is recovered",
        kind: Kind::Seconds {
            min: 1.0,
            max: 86400.0,
        },
    },
    Key {
        name: "heartbeat-interval",
        default: "2",
        help: "seconds between lease renewals; must be under half the lease-timeout",
        kind: Kind::Seconds {
            min: 0.1,
            max: 3600.0,
        },
    },
    Key {
        name: "output-limit",
        default: "1048576",
        help: "bytes of output kept per attempt (first and last halves beyond it), e.g. 1MiB",
        kind: Kind::Bytes {
            min: 1024,
            max: 1 << 30,
        },
    },
    Key {
        name: "kill-grace",
        default: "5",
        help: "seconds between SIGTERM and SIGKILL when a job is cancelled or times out",
        kind: Kind::Seconds {
            min: 0.0,
            max: 3600.0,
        },
    },
    Key {
        name: "job-timeout",
        default: "none",
        help: "seconds an attempt may run, copied into each job at enqueue (none: no limit)",
        kind: Kind::SecondsOrNone {
            min: 0.001,
            max: 30.0 * 86400.0,
        },
    },
    Key {
        name: "retention",
        default: "none",
        help: "seconds finished jobs are kept before workers delete them, e.g. 7d (none: forever)",
        kind: Kind::SecondsOrNone {
            min: 60.0,
            max: 100.0 * 365.0 * 86400.0,
        },
    },
];

/// Finds a key by name, or says which names exist.
pub fn key(name: &str) -> Result<&'static Key, InputError> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        InputError::Invalid(format!(
            "unknown config key '{name}'; valid keys are {}",
            names.join(", ")
        ))
    })
}

impl Key {
    /// Validates a user-supplied value and returns its canonical stored form.
    pub fn parse(&self, value: &str) -> Result<String, InputError> {
        let value = value.trim();
        let bad = |why: String| InputError::Invalid(format!("bad value for {}: {why}", self.name));
        match self.kind {
            Kind::Retries => {
                let n: i64 = value.parse().map_err(|_| {
                    bad(format!(
                        "'{value}' is not a whole number between 0 and {MAX_RETRIES_LIMIT}"
                    ))
                })?;
                Ok(validate_max_retries(n)
                    .map_err(|e| bad(e.to_string()))?
                    .to_string())
            }
            Kind::Base => {
                let base: f64 = value
                    .parse()
                    .ok()
                    .filter(|b: &f64| b.is_finite())
                    .ok_or_else(|| bad(format!("'{value}' is not a number")))?;
                if !(1.0..=1000.0).contains(&base) {
                    return Err(bad(format!("{value} is outside 1..=1000")));
                }
                Ok(format_number(base))
            }
            Kind::SecondsOrNone { .. } if value.eq_ignore_ascii_case("none") => Ok("none".into()),
            Kind::Seconds { min, max } | Kind::SecondsOrNone { min, max } => {
                let secs = duration::parse(value)
                    .map(|d| d.as_secs_f64())
                    .ok_or_else(|| bad(duration::expected(value)))?;
                if !(min..=max).contains(&secs) {
                    let none = if matches!(self.kind, Kind::SecondsOrNone { .. }) {
                        ", or none"
                    } else {
                        ""
                    };
                    return Err(bad(format!(
                        "{value} is outside {min}..={max} seconds{none}"
                    )));
                }
                Ok(format_number(secs))
            }
            Kind::Bytes { min, max } => {
                let bytes = parse_bytes(value).ok_or_else(|| {
                    bad(format!(
                        "'{value}' is not a size; give bytes (e.g. 65536) or a unit (64KiB, 1MiB)"
                    ))
                })?;
                if !(min..=max).contains(&bytes) {
                    return Err(bad(format!("{value} is outside {min}..={max} bytes")));
                }
                Ok(bytes.to_string())
            }
        }
    }
}

/// `65536`, `64KiB`, `1MiB`, `1.5M`, ... (every unit binary: sizes of output are
/// about memory and disk, where KiB is what people mean by K).
fn parse_bytes(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok().filter(|n: &f64| n.is_finite())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (0.0..1e18).contains(&bytes).then_some(bytes as u64)
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The settings in force, typed. Built from the stored key/value pairs with defaults
/// for the missing ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub max_retries: i64,
    pub backoff: Backoff,
    pub lease_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Bytes of output kept per attempt.
    pub output_limit: u64,
    /// Between SIGTERM and SIGKILL for a cancelled or timed-out attempt.
    pub kill_grace: Duration,
    /// The timeout a job gets when it is enqueued without one.
    pub job_timeout: Option<Duration>,
    /// How long finished jobs are kept; `None`: forever.
    pub retention: Option<Duration>,
}

impl Config {
    /// Every key with its value (stored or default), in [`KEYS`] order.
    pub fn effective(stored: &BTreeMap<String, String>) -> Vec<(&'static Key, String)> {
        KEYS.iter()
            .map(|k| {
                let value = stored
                    .get(k.name)
                    .and_then(|v| k.parse(v).ok())
                    .unwrap_or_else(|| k.default.to_owned());
                (k, value)
            })
            .collect()
    }

    pub fn from_stored(stored: &BTreeMap<String, String>) -> Config {
        let values: BTreeMap<&str, String> = Config::effective(stored)
            .into_iter()
            .map(|(k, v)| (k.name, v))
            .collect();
        let num = |name: &str| -> f64 {
            values
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        let secs = |name: &str| Duration::from_secs_f64(num(name).max(0.0));
        let optional = |name: &str| match values.get(name).map(String::as_str) {
            Some("none") | None => None,
            Some(_) => Some(secs(name)),
        };
        let lease_timeout = secs("lease-timeout");
        Config {
            max_retries: num("max-retries") as i64,
            backoff: Backoff::new(num("backoff-base"), secs("backoff-max")),
            lease_timeout,
            // A heartbeat slower than half the lease would let live jobs be recovered.
            heartbeat_interval: secs("heartbeat-interval").min(lease_timeout / 3),
            output_limit: num("output-limit") as u64,
            kill_grace: secs("kill-grace"),
            job_timeout: optional("job-timeout"),
            retention: optional("retention"),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::from_stored(&BTreeMap::new())
    }
}

/// Checks a new value against the others (the heartbeat must stay well inside the
/// lease) and returns its canonical form.
pub fn validate_change(
    stored: &BTreeMap<String, String>,
    name: &str,
    value: &str,
) -> Result<String, InputError> {
    let key = key(name)?;
    let canonical = key.parse(value)?;
    let mut next = stored.clone();
    next.insert(name.to_owned(), canonical.clone());
    let effective: BTreeMap<&str, f64> = Config::effective(&next)
        .into_iter()
        .filter_map(|(k, v)| Some((k.name, v.parse().ok()?)))
        .collect();
    let lease = effective.get("lease-timeout").copied().unwrap_or_default();
    let heartbeat = effective
        .get("heartbeat-interval")
        .copied()
        .unwrap_or_default();
    if heartbeat * 2.0 > lease {
        return Err(InputError::Invalid(format!(
            "heartbeat-interval ({heartbeat}s) must be at most half of lease-timeout ({lease}s); change the other one first"
        )));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::default();
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.backoff.delay(1), Duration::from_secs(2));
        assert_eq!(c.backoff.delay(30), Duration::from_secs(3600));
        assert_eq!(c.lease_timeout, Duration::from_secs(10));
    }

    #[test]
    fn values_are_validated_and_canonical() {
        let empty = BTreeMap::new();
        assert_eq!(
            validate_change(&empty, "backoff-base", "1.5")
                .ok()
                .as_deref(),
            Some("1.5")
        );
        assert_eq!(
            validate_change(&empty, "backoff-max", "1h").ok().as_deref(),
            Some("3600")
        );
        assert_eq!(
            validate_change(&empty, "backoff-max", "500ms")
                .ok()
                .as_deref(),
            Some("0.5")
        );
        assert!(validate_change(&empty, "backoff-base", "0.5").is_err());
        assert!(validate_change(&empty, "backoff-base", "NaN").is_err());
        assert!(validate_change(&empty, "max-retries", "-1").is_err());
        assert!(validate_change(&empty, "max-retries", "3.5").is_err());
        assert!(validate_change(&empty, "colour", "red").is_err());
        assert!(validate_change(&empty, "heartbeat-interval", "6").is_err());
    }

    #[test]
    fn control_settings_take_sizes_and_none() {
        let empty = BTreeMap::new();
        let set = |k: &str, v: &str| validate_change(&empty, k, v).ok();
        assert_eq!(set("output-limit", "1MiB").as_deref(), Some("1048576"));
        assert_eq!(set("output-limit", "64k").as_deref(), Some("65536"));
        assert_eq!(set("output-limit", "10"), None);
        assert_eq!(set("output-limit", "lots"), None);
        assert_eq!(set("kill-grace", "30s").as_deref(), Some("30"));
        assert_eq!(set("job-timeout", "none").as_deref(), Some("none"));
        assert_eq!(set("job-timeout", "90m").as_deref(), Some("5400"));
        assert_eq!(set("retention", "7d").as_deref(), Some("604800"));
        assert_eq!(set("retention", "5"), None);
        let c = Config::default();
        assert_eq!(
            (c.output_limit, c.kill_grace, c.job_timeout, c.retention),
            (1 << 20, Duration::from_secs(5), None, None)
        );
        let stored = BTreeMap::from([
            ("job-timeout".to_owned(), "30".to_owned()),
            ("retention".to_owned(), "86400".to_owned()),
        ]);
        let c = Config::from_stored(&stored);
        assert_eq!(c.job_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.retention, Some(Duration::from_secs(86400)));
    }
}
