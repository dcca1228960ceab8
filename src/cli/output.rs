//! Rendering: aligned tables and colour for people, JSON for scripts.
//!
//! Colour is used only when stdout is a terminal (or `--color always`) and `NO_COLOR`
//! is unset. JSON output is never coloured and is the only thing on stdout.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use serde_json::{Value, json};

use crate::job::{Job, JobState};
use crate::store::{AttemptRecord, WorkerRow, WorkerState};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
    color: bool,
}

impl Printer {
    pub fn new(json: bool, choice: ColorChoice) -> Printer {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && io::stdout().is_terminal()
            }
        };
        Printer {
            json,
            color: color && !json,
        }
    }

    /// Prints a JSON value on stdout: indented on a terminal, for people; one line
    /// when piped or redirected, so every document is one line for `jq`, `grep` or
    /// a JSON-lines reader. (Event streams are one line per event either way.)
    pub fn json(&self, value: &Value) -> io::Result<()> {
        let out = io::stdout();
        let pretty = out.is_terminal();
        let mut out = out.lock();
        if pretty {
            serde_json::to_writer_pretty(&mut out, value)?;
        } else {
            serde_json::to_writer(&mut out, value)?;
        }
        writeln!(out)
    }

    /// Prints plain lines on stdout.
    pub fn line(&self, text: &str) -> io::Result<()> {
        writeln!(io::stdout().lock(), "{text}")
    }

    /// Applies `style` to `text` if colour is on.
    pub fn paint(&self, text: &str, style: Style) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    pub fn state(&self, state: JobState) -> String {
        let color = match state {
            JobState::Pending => AnsiColor::Cyan,
            JobState::Processing => AnsiColor::Yellow,
            JobState::Completed => AnsiColor::Green,
            JobState::Failed => AnsiColor::Magenta,
            JobState::Dead => AnsiColor::Red,
            JobState::Cancelled => AnsiColor::BrightBlack,
        };
        self.paint(state.as_str(), Style::new().fg_color(Some(color.into())))
    }

    pub fn worker_state(&self, state: WorkerState) -> String {
        let color = match state {
            WorkerState::Idle => AnsiColor::Cyan,
            WorkerState::Busy => AnsiColor::Green,
            WorkerState::Stopping => AnsiColor::Yellow,
            WorkerState::Stopped => AnsiColor::BrightBlack,
            WorkerState::Lost => AnsiColor::Red,
        };
        self.paint(state.as_str(), Style::new().fg_color(Some(color.into())))
    }

    /// Prints rows as columns aligned under a bold header.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                let w = visible_width(cell);
                if let Some(max) = widths.get_mut(i) {
                    *max = (*max).max(w);
                }
            }
        }
        let mut out = io::stdout().lock();
        let bold = Style::new().bold();
        let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        writeln!(out, "{}", self.paint(&pad_row(&head, &widths), bold))?;
        for row in rows {
            writeln!(out, "{}", pad_row(row, &widths))?;
        }
        Ok(())
    }
}

fn pad_row(cells: &[String], widths: &[usize]) -> String {
    let last = cells.len().saturating_sub(1);
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if i < last {
            let pad = widths.get(i).copied().unwrap_or(0)
                - visible_width(cell).min(widths.get(i).copied().unwrap_or(0));
            line.push_str(&" ".repeat(pad + 2));
        }
    }
    line
}

/// Width on screen, skipping ANSI escape sequences.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// Shortens `text` to `max` characters on one line.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| {
            let reorders = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || reorders { ' ' } else { c }
        })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut short: String = one_line.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// RFC 3339, UTC, millisecond precision, with `Z`.
pub fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

pub fn opt_timestamp(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(timestamp(ms)))
}

/// A short human age: `850ms`, `12s`, `3m 4s`, `2h 5m`, `3d 4h`.
pub fn age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The JSON form of a job, used by every command that prints jobs.
pub fn job_json(job: &Job) -> Value {
    let waiting = matches!(job.state, JobState::Pending | JobState::Failed);
    json!({
        "id": job.id,
        "command": job.command,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "created_at": timestamp(job.created_at),
        "updated_at": timestamp(job.updated_at),
        "next_run_at": if waiting { Value::String(timestamp(job.next_run_at)) } else { Value::Null },
        "cwd": job.cwd,
        "interruptions": job.interruptions,
        "exit_code": job.exit_code,
        "last_error": job.last_error,
        "worker": job.worker_id,
        "started_at": opt_timestamp(job.started_at),
        "finished_at": opt_timestamp(job.finished_at),
        "timeout_ms": job.timeout_ms,
        "deadline_at": opt_timestamp(job.deadline_at),
        "cancel_requested": job.cancel_requested,
        "priority": job.priority,
        "queue": job.queue,
        "run_at": opt_timestamp(job.run_at),
        "after": job.after,
        "unique_key": job.unique_key,
        "env": job.env,
    })
}

/// The JSON form of one attempt of `show --json`: `attempt` counts from 1 in
/// lease-token order, as `logs --attempt N` does.
pub fn attempt_json(number: usize, attempt: &AttemptRecord) -> Value {
    let facts = &attempt.facts;
    json!({
        "attempt": number,
        "attempt_token": attempt.lease_token,
        "worker": attempt.worker_id,
        "host": facts.host,
        "pid": facts.pid,
        "started_at": opt_timestamp(attempt.started_at),
        "finished_at": timestamp(attempt.finished_at),
        "duration_ms": attempt.started_at.map(|start| (attempt.finished_at - start).max(0)),
        "outcome": attempt.outcome.as_str(),
        "exit_code": attempt.exit_code,
        "signal": facts.signal,
        "signal_name": facts.signal.map(signal_name),
        "max_rss_kb": facts.max_rss_kb,
        "cpu_ms": facts.cpu_ms,
        "output_total": attempt.output_total,
        "error": attempt.error,
    })
}

/// How an attempt ended in a few words: `exit code 3`, `SIGKILL`, or `-` when
/// neither is known (an interrupted attempt).
pub fn exit_or_signal(exit_code: Option<i64>, signal: Option<i64>) -> String {
    match (exit_code, signal) {
        (_, Some(signal)) => signal_name(signal),
        (Some(code), None) => code.to_string(),
        (None, None) => "-".to_owned(),
    }
}

/// The conventional name of a Linux signal number (`9` → `SIGKILL`), or `signal N`
/// for one without a name here.
pub fn signal_name(signal: i64) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {signal}"), |name| (*name).to_owned())
}

/// A size for people, in binary units: `512 B`, `3.1 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Text as a terminal should show it: control characters that would move the
/// cursor, change colours or reorder text are replaced by something visible, so
/// output, commands and ids can never rewrite what a user sees (or hide a line).
/// C0 controls (except newline and tab) become their Control Pictures (`\x1b` →
/// `␛`), DEL `␡`; C1 controls and the bidi overrides and isolates (U+202A–202E,
/// U+2066–2069) become `\u{...}`. Borrows when there is nothing to replace.
pub fn visible(text: &str) -> Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        matches!(c, '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\0'..='\x1f' if needs_escape(c) => {
                shown.push(char::from_u32(0x2400 + c as u32).unwrap_or('?'));
            }
            '\x7f' => shown.push('\u{2421}'),
            c if needs_escape(c) => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

pub fn worker_json(worker: &WorkerRow) -> Value {
    json!({
        "id": worker.info.id,
        "host": worker.info.host,
        "pid": worker.info.pid,
        "state": worker.state.as_str(),
        "job": worker.job,
        "started_at": timestamp(worker.started_at),
        "heartbeat_at": timestamp(worker.heartbeat_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_000), "12s");
        assert_eq!(age(184_000), "3m 4s");
    }

    #[test]
    fn truncation_keeps_one_line() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(visible("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(visible("plain"), Cow::Borrowed(_)));
        assert_eq!(visible("\x1b[2Jgone\r"), "␛[2Jgone␍");
        assert_eq!(visible("a\x7fb\u{85}c"), "a␡b\\u{85}c");
        assert_eq!(visible("\u{202e}evil\u{2066}"), "\\u{202e}evil\\u{2066}");
        assert_eq!(visible("\0"), "␀");
    }

    #[test]
    fn sizes_and_signals_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3_250_586), "3.1 MiB");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(64), "signal 64");
        assert_eq!(exit_or_signal(Some(3), None), "3");
        assert_eq!(exit_or_signal(None, Some(9)), "SIGKILL");
    }

    #[test]
    fn width_ignores_colour() {
        assert_eq!(visible_width("\u{1b}[32mok\u{1b}[0m"), 2);
    }
}
