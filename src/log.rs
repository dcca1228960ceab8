//! Log lines for people watching a worker: one line each, on stderr, stamped with
//! the local time. stdout stays reserved for command output (and pure JSON with
//! `--json`).
//!
//! A short `HH:MM:SS.mmm` is enough to read a log, but not to place it: the first
//! line of a process, the line saying workers started ([`started`]), and any line
//! whose local date or UTC offset differs from the last full stamp (midnight, a
//! daylight-saving change) carry the whole date and offset instead,
//! `2026-11-30 05:45:45.302 +01:00`. So a log kept in a file (`worker start
//! --detach`, a redirect) can always be read back to the instant, and a person
//! reading a terminal sees the time of their own wall clock.

use std::io::Write;
use std::sync::Mutex;

use jiff::ZonedDateTime as Zoned;
use jiff::civil::Date;
use jiff::tz::Offset;

/// The date and offset of the last fully stamped line (`None`: no line yet).
static LAST_FULL: Mutex<Option<(Date, Offset)>> = Mutex::new(None);

/// Prints an informational line.
pub fn info(message: &str) {
    line("", message, false);
}

/// Prints a warning.
pub fn warn(message: &str) {
    line("warning: ", message, false);
}

/// Prints the line that says a worker process started: always with the full date
/// and zone offset, so every run of a worker begins its log with them.
pub fn started(message: &str) {
    line("", message, true);
}

fn line(prefix: &str, message: &str, full: bool) {
    let now = Zoned::now();
    let stamp = {
        // A poisoned lock only means another thread panicked while printing.
        let mut last = LAST_FULL.lock().unwrap_or_else(|e| e.into_inner());
        let (text, new_last) = stamp(&now, *last, full);
        *last = new_last;
        text
    };
    // One write per line: processes sharing a log file (detached workers append to
    // one `worker.log`) never interleave within a line. A closed stderr (a terminal
    // that went away) is no reason to stop working.
    // Messages quote commands, ids and host names: one line, control characters shown.
    let line = format!("{stamp} {prefix}{}\n", crate::text::one_line(message));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The stamp for a line at `now`, given the date and offset of the last full stamp:
/// the full form when asked, for the first line, or when the date or offset
/// changed; the short time otherwise. Returns the date and offset to remember.
fn stamp(
    now: &Zoned,
    last: Option<(Date, Offset)>,
    full: bool,
) -> (String, Option<(Date, Offset)>) {
    let current = (now.date(), now.offset());
    if full || last != Some(current) {
        (
            now.strftime("%Y-%m-%d %H:%M:%S%.3f %:z").to_string(),
            Some(current),
        )
    } else {
        (now.strftime("%H:%M:%S%.3f").to_string(), last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Zoned {
        text.parse().expect("a zoned time")
    }

    #[test]
    fn the_first_line_has_the_date_and_offset_then_short_times() {
        let first = at("2026-11-30T05:45:45.302+01:00[Europe/Paris]");
        let (text, last) = stamp(&first, None, false);
        assert_eq!(text, "2026-11-30 05:45:45.302 +01:00");
        let later = at("2026-11-30T05:45:46.010+01:00[Europe/Paris]");
        let (text, again) = stamp(&later, last, false);
        assert_eq!(text, "05:45:46.010");
        assert_eq!(again, last);
    }

    #[test]
    fn a_start_line_always_has_the_full_stamp() {
        let now = at("2026-11-30T05:45:45.302+00:00[UTC]");
        let (_, last) = stamp(&now, None, false);
        let (text, _) = stamp(&now, last, true);
        assert_eq!(text, "2026-11-30 05:45:45.302 +00:00");
    }

    #[test]
    fn a_new_day_or_a_new_offset_brings_the_full_stamp_back() {
        let evening = at("2026-11-30T23:59:59.900-05:00[America/New_York]");
        let (_, last) = stamp(&evening, None, false);
        let midnight = at("2026-12-01T00:00:00.100-05:00[America/New_York]");
        let (text, last) = stamp(&midnight, last, false);
        assert_eq!(text, "2026-12-01 00:00:00.100 -05:00");
        // 2027-03-14: New York moves from -05:00 to -04:00 at 02:00.
        let before = at("2027-03-14T01:59:59.000-05:00[America/New_York]");
        let (_, last) = stamp(&before, last, false);
        let after = at("2027-03-14T03:00:00.000-04:00[America/New_York]");
        let (text, _) = stamp(&after, last, false);
        assert_eq!(text, "2027-03-14 03:00:00.000 -04:00");
    }
}
