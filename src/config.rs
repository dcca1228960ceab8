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
    Seconds { min: f64, max: f64 },
}

/// Every setting queuectl knows.
pub const KEYS: [Key; 5] = [
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
            Kind::Seconds { min, max } => {
                let secs = parse_seconds(value).ok_or_else(|| {
                    bad(format!(
                        "'{value}' is not a duration; give seconds (e.g. 30 or 0.5) or a unit (500ms, 5m, 1h)"
                    ))
                })?;
                if !(min..=max).contains(&secs) {
                    return Err(bad(format!("{value} is outside {min}..={max} seconds")));
                }
                Ok(format_number(secs))
            }
        }
    }
}

fn parse_seconds(value: &str) -> Option<f64> {
    if let Ok(secs) = value.parse::<f64>() {
        return secs.is_finite().then_some(secs);
    }
    let duration: jiff::SignedDuration = value.parse().ok()?;
    let secs = duration.as_secs_f64();
    (secs >= 0.0).then_some(secs)
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
        let lease_timeout = secs("lease-timeout");
        Config {
            max_retries: num("max-retries") as i64,
            backoff: Backoff::new(num("backoff-base"), secs("backoff-max")),
            lease_timeout,
            // A heartbeat slower than half the lease would let live jobs be recovered.
            heartbeat_interval: secs("heartbeat-interval").min(lease_timeout / 3),
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
        .map(|(k, v)| (k.name, v.parse().unwrap_or_default()))
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
}
