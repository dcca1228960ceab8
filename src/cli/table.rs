//! Aligned tables that never wrap: column widths in display columns, fitted to the
//! terminal.
//!
//! Widths are counted in terminal columns ([`display_width`]: CJK and most emoji
//! take two, combining marks none, ANSI colour sequences none), so columns line up
//! whatever the text. When a width limit is given (stdout is a terminal, see
//! [`terminal_width`]) and a table would be wider, the widest free-text column
//! ([`FREE_TEXT`]: command, last error, ...) is narrowed, cell by cell ending in
//! `…`, until the table fits; a line that still would not fit (a table of many
//! narrow columns on a very narrow terminal) is cut at the limit. Without a limit
//! (output piped or redirected) nothing is cut: scripts get the whole text.
//!
//! Cells must be single-line text (see [`super::output::one_line`]); the only escape
//! sequences a cell may hold are the colours the printer adds.

use std::io::IsTerminal;

use unicode_width::UnicodeWidthChar;

/// Columns, by header, whose text may be shortened to fit: free text of any length,
/// which people recognise from its start. Ids, states, counts and times are never
/// shortened.
const FREE_TEXT: [&str; 6] = [
    "COMMAND",
    "LAST ERROR",
    "LAST OUTPUT",
    "REASON",
    "MEANING",
    "ERROR",
];

/// Columns, by header, left out (in this order, one at a time) when the table
/// does not fit even with its free-text columns at their narrowest: details that
/// `show` and `--json` still give, so that the id, state, command and (last of
/// all) when the job last changed stay readable. A table's first column names
/// its rows (a job's id, a queue's or a cron entry's name) and is never left out,
/// whatever its header.
const DROPPABLE: [&str; 11] = [
    "PRIORITY",
    "QUEUE",
    "RUNS",
    "LAST OUTPUT",
    "LAST ERROR",
    "HEARTBEAT",
    "CPU",
    "MAX RSS",
    "LAST RUN",
    "TZ",
    "UPDATED",
];

/// The narrowest the command column is made: below this the start of a command no
/// longer says which it is. Other free-text columns go down to [`MIN_FREE_TEXT`]
/// (or their header, if wider).
const MIN_COMMAND: usize = 12;
const MIN_FREE_TEXT: usize = 12;

/// Spaces between columns.
const GAP: usize = 2;

/// The width tables must fit, or `None` when stdout is not a terminal (nothing is
/// cut then). `COLUMNS`, when set to a positive number, wins over the terminal's own
/// size, as for `ls`; a terminal whose size cannot be read counts as 80 columns.
pub fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    let from_tty = || {
        terminal_size::terminal_size_of(&stdout)
            .map(|(terminal_size::Width(w), _)| usize::from(w))
            .filter(|&n| n > 0)
    };
    Some(from_env.or_else(from_tty).unwrap_or(80))
}

/// How many terminal columns `text` takes, skipping ANSI escape sequences.
pub fn display_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => width += c.width().unwrap_or(0),
        }
    }
    width
}

/// `text` cut to at most `max` columns, ending in `…` when something was cut.
/// Escape sequences are kept (they take no room) and a cut line that held any ends
/// with a reset, so a colour never runs past the cut.
pub fn clip(text: &str, max: usize) -> String {
    if display_width(text) <= max {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut width = 0;
    let mut in_escape = false;
    let mut coloured = false;
    for c in text.chars() {
        if in_escape || c == '\u{1b}' {
            in_escape = !(in_escape && c == 'm');
            coloured = true;
            out.push(c);
            continue;
        }
        let w = c.width().unwrap_or(0);
        if width + w + 1 > max {
            break;
        }
        width += w;
        out.push(c);
    }
    if max > 0 {
        out.push('…');
    }
    if coloured {
        out.push_str("\u{1b}[0m");
    }
    out
}

/// The header line and row lines of a table, each at most `limit` columns wide when
/// a limit is given. Short rows are padded with empty cells.
pub fn render(header: &[&str], rows: &[Vec<String>], limit: Option<usize>) -> Vec<String> {
    let columns = header.len();
    let mut natural: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            natural[i] = natural[i].max(display_width(cell));
        }
    }
    // The columns shown (by index) and their widths.
    let mut shown: Vec<usize> = (0..columns).collect();
    let mut widths = natural.clone();
    if let Some(limit) = limit {
        let mut droppable = DROPPABLE.iter();
        loop {
            let kept: Vec<&str> = shown.iter().map(|&i| header[i]).collect();
            widths = shown.iter().map(|&i| natural[i]).collect();
            if fit(&kept, &mut widths, limit) {
                break;
            }
            let Some(drop) = droppable.find(|d| kept.get(1..).unwrap_or_default().contains(d))
            else {
                break;
            };
            shown.retain(|&i| i == 0 || header[i] != *drop);
        }
    }
    let pick = |cells: &[String]| -> Vec<String> {
        shown
            .iter()
            .map(|&i| cells.get(i).cloned().unwrap_or_default())
            .collect()
    };
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut lines = Vec::with_capacity(rows.len() + 1);
    for row in std::iter::once(&head).chain(rows) {
        let line = line(&pick(row), &widths);
        lines.push(match limit {
            Some(limit) => clip(&line, limit),
            None => line,
        });
    }
    lines
}

/// Narrows free-text columns, widest first, until the table is at most `limit`
/// columns wide or they are all at their minimum; says whether it fits.
fn fit(header: &[&str], widths: &mut [usize], limit: usize) -> bool {
    let total =
        |widths: &[usize]| widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1);
    let minimum: Vec<usize> = header
        .iter()
        .map(|h| {
            let least = if *h == "COMMAND" {
                MIN_COMMAND
            } else {
                MIN_FREE_TEXT
            };
            display_width(h).max(least)
        })
        .collect();
    let mut excess = total(widths).saturating_sub(limit);
    while excess > 0 {
        let widest = (0..widths.len())
            .filter(|&i| FREE_TEXT.contains(&header[i]) && widths[i] > minimum[i])
            .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
        let Some(i) = widest else { return false };
        // Down to the next-widest free-text column at most (one column at a time
        // once they are as wide), so that several long columns end up sharing the
        // room rather than one losing everything.
        let next = (0..widths.len())
            .filter(|&j| j != i && FREE_TEXT.contains(&header[j]))
            .map(|j| widths[j])
            .filter(|&w| w <= widths[i])
            .max()
            .unwrap_or(0)
            .max(minimum[i]);
        let cut = (widths[i] - next).clamp(1, excess);
        widths[i] -= cut;
        excess -= cut;
    }
    true
}

/// One line: each cell cut to its column's width and padded, the last one unpadded.
fn line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    let last = widths.len().saturating_sub(1);
    for (i, &width) in widths.iter().enumerate() {
        let cell = cells.get(i).map_or("", String::as_str);
        let shown = clip(cell, width);
        line.push_str(&shown);
        if i < last {
            let pad = width.saturating_sub(display_width(&shown)) + GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.truncate(line.trim_end_matches(' ').len());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本語"), 6);
        assert_eq!(display_width("🎉ok"), 4);
        assert_eq!(display_width("\u{1b}[32mok\u{1b}[0m"), 2);
    }

    #[test]
    fn clipping_counts_columns_and_resets_colour() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(clip("日本語です", 6), "日本…");
        assert_eq!(clip("\u{1b}[1mabcdef", 3), "\u{1b}[1mab…\u{1b}[0m");
    }

    #[test]
    fn columns_align_in_display_columns() {
        let lines = render(
            &["ID", "COMMAND"],
            &[row(&["日本", "x"]), row(&["ab", "y"])],
            None,
        );
        assert_eq!(lines, ["ID    COMMAND", "日本  x", "ab    y"]);
    }

    #[test]
    fn the_free_text_column_is_narrowed_to_fit() {
        let long = "echo ".repeat(40);
        let lines = render(
            &["ID", "STATE", "COMMAND"],
            &[row(&["job-1", "pending", &long])],
            Some(40),
        );
        for line in &lines {
            assert!(display_width(line) <= 40, "{line}");
        }
        assert!(lines[1].starts_with("job-1  pending  echo echo"));
        assert!(lines[1].ends_with('…'));
        // Without a limit nothing is cut.
        let full = render(&["ID", "COMMAND"], &[row(&["a", &long])], None);
        assert!(full[1].ends_with(long.trim_end()));
    }

    #[test]
    fn two_long_columns_share_the_room() {
        let a = "a".repeat(100);
        let b = "b".repeat(60);
        let lines = render(&["COMMAND", "LAST ERROR"], &[row(&[&a, &b])], Some(62));
        assert_eq!(display_width(&lines[1]), 62);
        assert_eq!(lines[1].matches('a').count(), 29);
        assert_eq!(lines[1].matches('b').count(), 29);
    }

    #[test]
    fn details_are_left_out_before_the_command_is_unreadable() {
        let id = "01a22ada-ad04-70c3-9d7b-1a5ce6cf80b6";
        let header = ["ID", "STATE", "PRIORITY", "UPDATED", "COMMAND"];
        let lines = render(
            &header,
            &[row(&[id, "pending", "0", "05:08:24", &"x".repeat(100)])],
            Some(70),
        );
        // 36 + 7 + 8 + 8 + 12 columns and their gaps is 79: PRIORITY has to go.
        assert_eq!(
            lines[0],
            format!("ID{}STATE    UPDATED   COMMAND", " ".repeat(36))
        );
        assert_eq!(display_width(&lines[1]), 70);
        assert!(lines[1].ends_with("  xxxxxxxxxxxx…"), "{}", lines[1]);
        // At 80 it all fits, the command at its narrowest.
        let lines = render(
            &header,
            &[row(&[id, "pending", "0", "05:08:24", &"x".repeat(100)])],
            Some(80),
        );
        assert!(lines[0].contains("PRIORITY"), "{}", lines[0]);
        assert_eq!(display_width(&lines[1]), 80);
    }

    #[test]
    fn a_table_without_free_text_is_cut_at_the_limit() {
        let lines = render(
            &["ID", "HOST"],
            &[row(&["x".repeat(30).as_str(), "h"])],
            Some(10),
        );
        assert_eq!(lines[1], "xxxxxxxxx…");
    }

    #[test]
    fn the_first_column_names_the_rows_and_stays() {
        // `queue list`: the queue's name is the first column, headed QUEUE.
        let header = [
            "QUEUE",
            "PENDING",
            "RUNNING",
            "COMPLETED",
            "FAILED",
            "STATUS",
        ];
        let row: Vec<String> = [
            "mail", "1234567", "1234567", "1234567", "1234567", "running",
        ]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
        let lines = render(&header, &[row], Some(40));
        assert!(lines[0].starts_with("QUEUE"), "{lines:?}");
        assert!(lines[1].starts_with("mail"), "{lines:?}");
    }

    #[test]
    fn cron_entries_fit_by_leaving_out_details_not_by_cutting_lines() {
        let header = ["NAME", "SCHEDULE", "TZ", "NEXT RUN", "LAST RUN", "COMMAND"];
        let row: Vec<String> = [
            "nightly-backup",
            "0 3 * * *",
            "Europe/Paris",
            "2026-12-01 02:00:00 (in 20h28m)",
            "-",
            "./backup.sh --full",
        ]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
        let lines = render(&header, &[row], Some(80));
        for line in &lines {
            assert!(display_width(line) <= 80, "{line}");
            assert!(!line.ends_with('…') || line.contains("./backup"), "{line}");
        }
        assert!(lines[0].contains("COMMAND"), "{lines:?}");
        assert!(lines[1].contains("(in 20h28m)"), "{lines:?}");
    }
}
