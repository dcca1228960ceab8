//! Unit tests of [`CronSchedule`]: field counts, shorthands, time zones and the two
//! daylight saving time changes.

use super::*;

/// Unix ms of an RFC 3339 time.
fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>()
        .expect("a valid time")
        .as_millisecond()
}

/// The next tick of `expr` in `zone` strictly after `after`, as RFC 3339 UTC.
fn next(expr: &str, zone: &str, after: &str) -> String {
    let schedule = CronSchedule::parse(expr, zone, SecondsField::Allowed).expect("parses");
    let tick = schedule.next_after(ms(after)).expect("has a next tick");
    Timestamp::from_millisecond(tick)
        .expect("in range")
        .to_string()
}

fn refused(expr: &str) -> String {
    match CronSchedule::parse(expr, "UTC", SecondsField::Refused) {
        Ok(_) => panic!("{expr:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_next_tick_is_strictly_after_the_instant() {
    assert_eq!(
        next("* * * * *", "UTC", "2026-05-01T12:00:00Z"),
        "2026-05-01T12:01:00Z"
    );
    assert_eq!(
        next("* * * * *", "UTC", "2026-05-01T11:59:59.999Z"),
        "2026-05-01T12:00:00Z"
    );
    assert_eq!(
        next("* * * * *", "UTC", "2026-05-01T12:00:00.001Z"),
        "2026-05-01T12:01:00Z"
    );
    assert_eq!(
        next("0 9 * * 1-5", "UTC", "2026-05-01T09:00:00Z"),
        "2026-05-04T09:00:00Z"
    );
}

#[test]
fn shorthands_are_their_five_fields() {
    assert_eq!(
        next("@hourly", "UTC", "2026-05-01T12:30:00Z"),
        "2026-05-01T13:00:00Z"
    );
    assert_eq!(
        next("@HOURLY", "UTC", "2026-05-01T13:00:00Z"),
        "2026-05-01T14:00:00Z"
    );
    assert_eq!(
        next("@daily", "UTC", "2026-05-01T12:30:00Z"),
        "2026-05-02T00:00:00Z"
    );
    assert_eq!(
        next("@midnight", "UTC", "2026-05-01T12:30:00Z"),
        "2026-05-02T00:00:00Z"
    );
    // 2026-05-03 is a Sunday.
    assert_eq!(
        next("@weekly", "UTC", "2026-05-01T12:30:00Z"),
        "2026-05-03T00:00:00Z"
    );
    assert_eq!(
        next("@monthly", "UTC", "2026-05-01T12:30:00Z"),
        "2026-06-01T00:00:00Z"
    );
    assert_eq!(
        next("@yearly", "UTC", "2026-05-01T12:30:00Z"),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@annually", "UTC", "2026-05-01T12:30:00Z"),
        "2027-01-01T00:00:00Z"
    );
}

#[test]
fn hourly_in_a_zone_with_a_half_hour_offset_is_on_its_hour() {
    // India is UTC+05:30: its hours start at half past in UTC.
    assert_eq!(
        next("@hourly", "Asia/Kolkata", "2026-05-01T12:00:00Z"),
        "2026-05-01T12:30:00Z"
    );
}

#[test]
fn times_are_read_in_the_entry_zone() {
    // 09:00 in Tokyo (UTC+9, no DST) is 00:00 UTC.
    assert_eq!(
        next("0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00:00Z"),
        "2026-01-02T00:00:00Z"
    );
    // 09:00 in New York: 14:00 UTC in winter (EST), 13:00 UTC in summer (EDT).
    assert_eq!(
        next("0 9 * * *", "America/New_York", "2026-01-10T00:00:00Z"),
        "2026-01-10T14:00:00Z"
    );
    assert_eq!(
        next("0 9 * * *", "America/New_York", "2026-07-10T00:00:00Z"),
        "2026-07-10T13:00:00Z"
    );
}

#[test]
fn a_time_skipped_by_the_spring_change_runs_once_right_after_it() {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never
    // happens that day.
    let after = "2026-03-08T05:00:00Z"; // 00:00 EST
    assert_eq!(
        next("30 2 * * *", "America/New_York", after),
        "2026-03-08T07:00:00Z"
    );
    // The day after, 02:30 EDT again.
    assert_eq!(
        next("30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z"),
        "2026-03-09T06:30:00Z"
    );
    // Elapsed-time entries just go on: 01:45 EST, then 03:00 EDT.
    assert_eq!(
        next("*/15 * * * *", "America/New_York", "2026-03-08T06:45:00Z"),
        "2026-03-08T07:00:00Z"
    );
}

#[test]
fn a_time_repeated_by_the_autumn_change_runs_once() {
    // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST, so 01:30 happens at
    // 05:30 UTC and again at 06:30 UTC.
    let after = "2026-11-01T04:00:00Z"; // 00:00 EDT
    assert_eq!(
        next("30 1 * * *", "America/New_York", after),
        "2026-11-01T05:30:00Z"
    );
    // Not again at the second 01:30: the next run is the next day's.
    assert_eq!(
        next("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z"),
        "2026-11-02T06:30:00Z"
    );
    // Entries that repeat within the hour follow elapsed time through the repeat.
    assert_eq!(
        next("*/15 * * * *", "America/New_York", "2026-11-01T05:45:00Z"),
        "2026-11-01T06:00:00Z"
    );
    assert_eq!(
        next("@hourly", "Europe/Paris", "2026-10-25T00:00:00Z"),
        "2026-10-25T01:00:00Z"
    );
}

#[test]
fn a_seconds_field_is_only_for_callers_that_allow_it() {
    assert!(refused("*/2 * * * * *").contains("has 6 fields"));
    assert_eq!(
        next("*/2 * * * * *", "UTC", "2026-05-01T12:00:00Z"),
        "2026-05-01T12:00:02Z"
    );
    assert_eq!(
        next("* * * * * *", "UTC", "2026-05-01T12:00:00.400Z"),
        "2026-05-01T12:00:01Z"
    );
}

#[test]
fn bad_expressions_are_refused_naming_them() {
    assert!(refused("").contains("cron expression is empty"));
    assert!(refused("   ").contains("cron expression is empty"));
    assert!(refused("* * * *").contains("'* * * *' has 4 fields"));
    assert!(refused("* * * * * * *").contains("has 7 fields"));
    for bad in [
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "a b c d e",
    ] {
        let message = refused(bad);
        assert!(message.contains(&format!("'{bad}'")), "{bad}: {message}");
        assert!(!message.contains('\n'), "{message}");
    }
    assert!(refused("61 * * * *").contains("the minute field '61' is not valid (values 0-59"));
    assert!(refused("* * 32 * *").contains("the day-of-month field '32'"));
    assert!(refused("* * * * MON-XYZ").contains("the day-of-week field 'MON-XYZ'"));
    let seconds = CronSchedule::parse("61 * * * * *", "UTC", SecondsField::Allowed)
        .expect_err("refused")
        .to_string();
    assert!(seconds.contains("the second field '61'"), "{seconds}");
    assert!(refused("@sometimes").contains("unknown cron shorthand '@sometimes'"));
    assert!(refused("@reboot").contains("@reboot"));
}

#[test]
fn expressions_are_kept_on_one_line() {
    let schedule =
        CronSchedule::parse(" 0\t9 *\n* 1-5 ", "UTC", SecondsField::Refused).expect("parses");
    assert_eq!(schedule.text(), "0 9 * * 1-5");
    let schedule = CronSchedule::parse("@Daily", "UTC", SecondsField::Refused).expect("parses");
    assert_eq!(schedule.text(), "@Daily");
}

#[test]
fn zones_are_checked_and_spelled_canonically() {
    let schedule =
        CronSchedule::parse("@daily", "america/new_york", SecondsField::Refused).expect("known");
    assert_eq!(schedule.zone_name(), "America/New_York");
    let err =
        CronSchedule::parse("@daily", "Mars/Olympus", SecondsField::Refused).expect_err("unknown");
    assert!(err.to_string().contains("unknown time zone 'Mars/Olympus'"));
    assert!(CronSchedule::parse("@daily", "+05:00", SecondsField::Refused).is_err());
}

#[test]
fn an_expression_that_never_matches_has_no_next_tick() {
    let schedule = CronSchedule::parse("0 0 30 2 *", "UTC", SecondsField::Refused).expect("parses");
    assert!(schedule.next_after(ms("2026-01-01T00:00:00Z")).is_err());
}
