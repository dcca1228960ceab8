//! Durations (`queuectl::duration`): `--timeout`, `--delay`, `wait --timeout` and
//! every duration setting go through `parse`; messages print with `human`.

use std::time::Duration;

use proptest::prelude::*;
use queuectl::duration::{human, parse};

use crate::{corpus_strings, fuzzed};

/// The largest duration `parse` accepts, in seconds.
const LIMIT_SECS: f64 = 1e12;

/// What `parse` promises for any text: no panic, and an answer within its range
/// that does not depend on surrounding blanks.
fn check(text: &str) -> Result<(), TestCaseError> {
    let parsed = parse(text);
    if let Some(d) = parsed {
        prop_assert!(d.as_secs_f64() < LIMIT_SECS, "{text:?} gave {d:?}");
    }
    prop_assert_eq!(
        parsed,
        parse(text.trim()),
        "blanks changed the answer for {:?}",
        text
    );
    Ok(())
}

/// How far `human` may round `d`: the unit of its last digit.
fn resolution(d: Duration) -> Duration {
    match d.as_secs() {
        _ if d < Duration::from_secs(1) => Duration::from_millis(1),
        0..10 => Duration::from_millis(50),
        10..3600 => Duration::from_secs(1),
        3600..86_400 => Duration::from_secs(60),
        _ => Duration::from_secs(3600),
    }
}

#[test]
fn the_corpus_parses_without_panicking() {
    for text in corpus_strings("durations") {
        check(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(text in fuzzed(corpus_strings("durations"))) {
        check(&text)?;
    }

    /// What `human` prints, `parse` reads back to within the printed precision.
    #[test]
    fn printed_durations_parse_back(ms in 0u64..(LIMIT_SECS as u64 / 10 * 1000)) {
        let d = Duration::from_millis(ms);
        let printed = human(d);
        let back = parse(&printed);
        prop_assert!(back.is_some(), "{:?} printed as {:?}, which does not parse", d, printed);
        let back = back.unwrap_or_default();
        let error = back.abs_diff(d);
        prop_assert!(
            error <= resolution(d),
            "{:?} printed as {:?} parsed back as {:?}", d, printed, back
        );
    }

    /// Plain seconds are seconds; anything negative, not finite or too large is refused.
    #[test]
    fn plain_seconds_are_seconds(secs in any::<f64>()) {
        let parsed = parse(&secs.to_string());
        if (0.0..LIMIT_SECS).contains(&secs) {
            let d = parsed.unwrap_or_else(|| panic!("{secs} was refused"));
            prop_assert!((d.as_secs_f64() - secs).abs() <= 1e-9 * secs.max(1.0));
        } else {
            prop_assert_eq!(parsed, None, "{} was accepted", secs);
        }
    }

    /// A number with a unit is that many units (to the microsecond: `parse` reads
    /// through seconds as an `f64`).
    #[test]
    fn units_scale(n in 0u32..100_000, unit in prop::sample::select(vec![
        ("ms", 1_000_000u128), ("s", 1_000_000_000), ("m", 60_000_000_000),
        ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ])) {
        let (suffix, nanos) = unit;
        let parsed = parse(&format!("{n}{suffix}"));
        prop_assert!(parsed.is_some(), "{}{} refused", n, suffix);
        let got = parsed.unwrap_or_default().as_nanos();
        let want = u128::from(n) * nanos;
        prop_assert!(got.abs_diff(want) <= 1000, "{}{} read as {}ns", n, suffix, got);
    }
}
