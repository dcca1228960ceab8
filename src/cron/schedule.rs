//! A recurring job's schedule: a cron expression evaluated in an IANA time zone, and
//! the one question the rest of queuectl asks of it, [`CronSchedule::next_after`].
//!
//! Parsing and matching are croner's (a maintained crate that follows POSIX/Vixie
//! cron). croner searches on the wall clock of any date-time type that implements
//! its `CronDateTime` trait; `Wall` connects it to jiff, which queuectl already
//! uses and whose time zone database decides offsets and daylight saving time.
//!
//! Invariants: an expression has exactly five fields (minute hour day-of-month month
//! day-of-week) or is one of the shorthands in [`SHORTHANDS`]; a sixth, leading
//! seconds field is accepted only when the caller allows it (tests); the text kept is
//! the fields joined by single spaces, so it prints on one line.

use std::cmp::Ordering;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

use crate::error::InputError;

/// The `@` shorthands and the five fields each stands for.
pub const SHORTHANDS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Whether a leading seconds field may be given (a sixth field). Only tests allow
/// it: a real minute-long wait per tick would make them slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondsField {
    Refused,
    Allowed,
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    zone: TimeZone,
    zone_name: String,
    cron: Cron,
}

impl CronSchedule {
    /// Parses `text` (five fields, a shorthand, or with [`SecondsField::Allowed`] six
    /// fields, seconds first) to be read in the IANA time zone `zone`.
    pub fn parse(text: &str, zone: &str, seconds: SecondsField) -> Result<Self, InputError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let normal = fields.join(" ");
        let shown = normal.escape_debug();
        let (zone, zone_name) = time_zone(zone)?;
        let hint = "give five fields (minute hour day-of-month month day-of-week), e.g. \
                    '0 9 * * 1-5', or one of @yearly @monthly @weekly @daily @hourly";
        let expanded = match fields.as_slice() {
            [] => {
                return Err(InputError::Invalid(format!(
                    "the cron expression is empty; {hint}"
                )));
            }
            [one] if one.starts_with('@') => SHORTHANDS
                .iter()
                .find(|(name, _)| one.eq_ignore_ascii_case(name))
                .map(|(_, fields)| (*fields).to_owned())
                .ok_or_else(|| {
                    InputError::Invalid(format!(
                        "unknown cron shorthand '{shown}'; use one of @yearly @annually \
                         @monthly @weekly @daily @midnight @hourly, or five fields"
                    ))
                })?,
            _ if fields.len() == 5 => normal.clone(),
            _ if fields.len() == 6 && seconds == SecondsField::Allowed => normal.clone(),
            _ => {
                return Err(InputError::Invalid(format!(
                    "cron expression '{shown}' has {} fields; {hint}",
                    fields.len()
                )));
            }
        };
        let with_seconds = expanded.split_whitespace().count() == 6;
        let parser = CronParser::builder()
            .seconds(if with_seconds {
                Seconds::Required
            } else {
                Seconds::Disallowed
            })
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(&expanded).map_err(|e| {
            let why = bad_field(&parser, &expanded).unwrap_or_else(|| one_line(&e));
            InputError::Invalid(format!("bad cron expression '{shown}': {why}; {hint}"))
        })?;
        Ok(CronSchedule {
            text: normal,
            zone,
            zone_name,
            cron,
        })
    }

    /// An entry as a store keeps it: checked when it was added, so a seconds field
    /// there was allowed then.
    pub fn from_stored(text: &str, zone: &str) -> Result<Self, InputError> {
        CronSchedule::parse(text, zone, SecondsField::Allowed)
    }

    /// The expression, fields separated by single spaces.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The time zone's IANA name, as the time zone database spells it.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first tick strictly after `after_ms` (Unix ms), in Unix ms.
    ///
    /// Daylight saving time, as croner resolves it on the zone's wall clock: a
    /// fixed-time entry (`30 2 * * *`) runs once on a day whose clock goes back (at
    /// the first 02:30), and on a day whose clock skips 02:30 it runs at the first
    /// instant after the gap; entries that repeat within the hour (`*/15 * * * *`)
    /// follow elapsed time through both changes.
    pub fn next_after(&self, after_ms: i64) -> Result<i64, InputError> {
        let never = |why: String| {
            InputError::Invalid(format!(
                "cron expression '{}' never matches a time in {} ({why}); check that its \
                 day-of-month, month and day-of-week can meet",
                self.text.escape_debug(),
                self.zone_name
            ))
        };
        let start = Timestamp::from_millisecond(after_ms)
            .map_err(|e| never(e.to_string()))?
            .to_zoned_datetime(self.zone.clone());
        let next = self
            .cron
            .find_next_occurrence(&Wall(start), false)
            .map_err(|e| never(one_line(&e)))?;
        Ok(next.0.timestamp().as_millisecond())
    }
}

/// The time zone named `name`, with its canonical IANA name; unknown names are
/// refused.
pub fn time_zone(name: &str) -> Result<(TimeZone, String), InputError> {
    let unknown = || {
        InputError::Invalid(format!(
            "unknown time zone '{}'; give an IANA name such as Europe/Paris, \
             America/New_York or UTC",
            name.escape_debug()
        ))
    };
    let zone = TimeZone::get(name).map_err(|_| unknown())?;
    let canonical = zone.iana_name().ok_or_else(unknown)?.to_owned();
    Ok((zone, canonical))
}

/// The IANA name of this machine's time zone, the default for `cron add`.
pub fn local_zone_name() -> Result<String, InputError> {
    TimeZone::try_system()
        .ok()
        .and_then(|zone| zone.iana_name().map(str::to_owned))
        .ok_or_else(|| {
            InputError::Invalid(
                "cannot tell the name of this machine's time zone (TZ or /etc/localtime); \
                 give one with --tz, e.g. --tz Europe/Paris or --tz UTC"
                    .into(),
            )
        })
}

/// The names and ranges of the fields, seconds first.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];

/// Which field of `expanded` croner refuses, said in words: each field is tried
/// alone, the others `*`. `None` if no single field is to blame.
fn bad_field(parser: &CronParser, expanded: &str) -> Option<String> {
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let offset = FIELDS.len() - fields.len();
    (0..fields.len()).find_map(|at| {
        let alone: Vec<&str> = (0..fields.len())
            .map(|i| if i == at { fields[at] } else { "*" })
            .collect();
        parser.parse(&alone.join(" ")).err().map(|_| {
            let (name, range) = FIELDS[at + offset];
            format!(
                "the {name} field '{}' is not valid (values {range}, with * , - /)",
                fields[at].escape_debug()
            )
        })
    })
}

/// croner's messages, on one line and without a trailing period.
fn one_line(e: &CronError) -> String {
    let text = e.to_string().replace(['\n', '\r'], " ");
    text.trim_end_matches('.').to_owned()
}

/// A zoned jiff time as croner sees it: its wall clock, and how a wall clock time
/// resolves in its zone (once, twice when the clock goes back, never in a gap).
#[derive(Debug, Clone)]
struct Wall(ZonedDateTime);

impl CronDateTime for Wall {
    fn to_civil(&self) -> CivilDateTime {
        let dt = self.0.datetime();
        // jiff keeps every part in range, so they are taken as they are.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(
                i32::from(dt.year()),
                dt.month().unsigned_abs().into(),
                dt.day().unsigned_abs().into(),
            ),
            CivilTime::from_parts_unchecked(
                dt.hour().unsigned_abs().into(),
                dt.minute().unsigned_abs().into(),
                dt.second().unsigned_abs().into(),
            ),
        )
    }

    fn civil_weekday(&self) -> croner::Weekday {
        let days = self.0.weekday().to_sunday_zero_offset().unsigned_abs();
        croner::Weekday::from_days_from_sunday(days.into())
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let part = |n: u32| i8::try_from(n).map_err(|_| CronError::InvalidDate);
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let dt = DateTime::new(
            year,
            part(civil.month())?,
            part(civil.day())?,
            part(civil.hour())?,
            part(civil.minute())?,
            part(civil.second())?,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let ambiguous = self.0.time_zone().to_ambiguous_zoned_datetime(dt);
        let bad = |_| CronError::InvalidTime;
        Ok(match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => {
                Resolution::Single(Wall(ambiguous.unambiguous().map_err(bad)?))
            }
            AmbiguousOffset::Fold { .. } => Resolution::Ambiguous(
                Wall(ambiguous.clone().earlier().map_err(bad)?),
                Wall(ambiguous.later().map_err(bad)?),
            ),
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(Wall)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
