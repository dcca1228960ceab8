//! Durations as people write and read them: `30`, `0.5`, `500ms`, `5m`, `1h30m`, `7d`
//! on input (plain numbers are seconds), `1.2s`, `3m05s`, `2h00m`, `7d` on output.
//! One parser and one printer for every flag, setting and message that holds a
//! duration, so `--timeout 30s`, `config set kill-grace 30s` and the `timed out after
//! 30s` they lead to all agree.

use std::time::Duration;

/// Parses a duration: a non-negative number of seconds (decimals allowed), or a
/// number with units (`500ms`, `90s`, `5m`, `1h`, `7d`, `1h30m`, as jiff reads them).
/// `None` for anything else, negative values included.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let secs = match text.parse::<f64>() {
        Ok(secs) => secs,
        Err(_) => {
            let span: jiff::Span = text.parse().ok()?;
            span.total((
                jiff::Unit::Second,
                jiff::SpanRelativeTo::days_are_24_hours(),
            ))
            .ok()?
        }
    };
    (0.0..1e12)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// What [`parse`] says when it refuses `text`, for error messages.
pub fn expected(text: &str) -> String {
    format!(
        "'{text}' is not a duration; give seconds (e.g. 30 or 0.5) or a number with a unit (500ms, 30s, 5m, 1h, 7d)"
    )
}

/// A short human form: `850ms`, `1.2s`, `42s`, `3m05s`, `2h00m`, `3d04h`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 10 {
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ if secs.is_multiple_of(86400) => format!("{}d", secs / 86400),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_and_units() {
        let s = |text: &str| parse(text).map(|d| d.as_secs_f64());
        assert_eq!(s("30"), Some(30.0));
        assert_eq!(s("0.5"), Some(0.5));
        assert_eq!(s("500ms"), Some(0.5));
        assert_eq!(s("5m"), Some(300.0));
        assert_eq!(s("1h30m"), Some(5400.0));
        assert_eq!(s("7d"), Some(604_800.0));
        assert_eq!(s("-1"), None);
        assert_eq!(s("NaN"), None);
        assert_eq!(s("soon"), None);
        assert_eq!(s(""), None);
    }

    #[test]
    fn prints_short_human_forms() {
        let h = |ms: u64| human(Duration::from_millis(ms));
        assert_eq!(h(850), "850ms");
        assert_eq!(h(1_200), "1.2s");
        assert_eq!(h(2_000), "2s");
        assert_eq!(h(30_000), "30s");
        assert_eq!(h(185_000), "3m05s");
        assert_eq!(h(7_200_000), "2h00m");
        assert_eq!(h(604_800_000), "7d");
        assert_eq!(h(97_200_000), "1d03h");
    }
}
