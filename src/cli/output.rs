//! Rendering: aligned tables, local times and colour for people, JSON for scripts.
//!
//! Colour ([`Printer::new`]): `--color always|never` wins; otherwise colour is on
//! only when stdout is a terminal and the environment does not object (`NO_COLOR`,
//! `CLICOLOR=0` and `TERM=dumb` turn it off, `CLICOLOR_FORCE` turns it on even into
//! a pipe), read through `anstyle-query`. JSON output is never coloured and is
//! the only thing on stdout.
//!
//! Times for people ([`Printer::time`]) are in the local time zone (`TZ`, else the
//! system's), as `14:03:21` today and `2026-11-29 14:03:21` on another day; with
//! `--utc` the same in UTC with a `Z`. JSON always has RFC 3339 UTC ([`timestamp`]).
//! Tables fit the terminal's width (see [`super::table`]).

pub use crate::text::{one_line, visible};
use std::io::{self, IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use serde_json::{Map, Value, json};

use super::table;
use crate::job::{Cancel, Job, JobState};
use crate::store::{AttemptRecord, QueueRow, WorkerRow, WorkerState};

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
    /// `--utc`: times in UTC instead of the local time zone.
    utc: bool,
    /// The width tables must fit; `None` when stdout is not a terminal.
    width: Option<usize>,
}

impl Printer {
    pub fn new(json: bool, choice: ColorChoice, utc: bool) -> Printer {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => auto_color(io::stdout().is_terminal()),
        };
        Printer {
            json,
            color: color && !json,
            utc,
            width: table::terminal_width(),
        }
    }

    /// Whether stdout is a terminal (tables are fitted to it, `list` pages).
    pub fn is_terminal(&self) -> bool {
        self.width.is_some()
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

    /// Prints rows as columns aligned under a bold header, fitted to the terminal
    /// (free-text columns shortened with `…`) when stdout is one; cells must be one
    /// line (see [`one_line`]).
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        let bold = Style::new().bold();
        for (i, line) in table::render(header, rows, self.width).iter().enumerate() {
            if i == 0 {
                writeln!(out, "{}", self.paint(line, bold))?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    /// A time (Unix ms) for people: local (UTC with `--utc`), `14:03:21` if it is
    /// today there, else `2026-11-29 14:03:21`.
    pub fn time(&self, ms: i64) -> String {
        let tz = if self.utc {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::system()
        };
        human_time(ms, jiff::Timestamp::now(), &tz, self.utc)
    }
}

/// Whether `--color auto` colours: `NO_COLOR` (non-empty) never, `CLICOLOR_FORCE`
/// (non-empty) always, `CLICOLOR=0` never; otherwise on a terminal unless `TERM` is
/// `dumb` (or whatever `TERM` says, with `CLICOLOR` set to something else than 0).
/// The order is `anstream`'s; unlike it, an unset `TERM` does not turn colour off:
/// a real terminal without `TERM` (a container's `docker exec -t`, some CI runners)
/// still shows colour, and `TERM=dumb` is the way to say it cannot.
fn auto_color(terminal: bool) -> bool {
    if anstyle_query::no_color() {
        return false;
    }
    if anstyle_query::clicolor_force() {
        return true;
    }
    let clicolor = anstyle_query::clicolor();
    if clicolor == Some(false) {
        return false;
    }
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    terminal && (!dumb || clicolor == Some(true))
}

/// [`Printer::time`] for a given clock and zone.
fn human_time(ms: i64, now: jiff::Timestamp, tz: &jiff::tz::TimeZone, utc: bool) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond(ms) else {
        return ms.to_string();
    };
    let at = at.to_zoned_datetime(tz.clone());
    let today = now.to_zoned_datetime(tz.clone()).date();
    let format = if at.date() == today {
        "%H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let text = at.strftime(format).to_string();
    if utc { text + "Z" } else { text }
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

/// A short human age or duration (`850ms`, `1.2s`, `3m05s`, `2h00m`): the worker's
/// log and every table use the one form of [`crate::duration::human`].
pub fn age(ms: i64) -> String {
    crate::duration::human(std::time::Duration::from_millis(
        u64::try_from(ms).unwrap_or(0),
    ))
}

/// The JSON form of a job, used by every command that prints jobs. While an
/// attempt runs, `current_attempt` is its number (as the worker's log counts:
/// finished attempts plus one; null otherwise) and `finished_at` and `exit_code`
/// are null: the store still holds the previous attempt's, which `history` has.
pub fn job_json(job: &Job) -> Value {
    let waiting = matches!(job.state, JobState::Pending | JobState::Failed);
    let running = job.state == JobState::Processing;
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
        "exit_code": if running { None } else { job.exit_code },
        "last_error": job.last_error,
        "worker": job.worker_id,
        "started_at": opt_timestamp(job.started_at),
        "finished_at": if running { Value::Null } else { opt_timestamp(job.finished_at) },
        "current_attempt": if running { Some(job.attempts + 1) } else { None },
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

/// What `cancel` did to each job, as `cancel --json` and the dashboard's API say it:
/// `{"id", "state"}`, the state `cancelled` (at once) or `cancelling` (its worker
/// stops it).
pub fn cancel_json(plan: &[(String, Cancel)]) -> Vec<Value> {
    plan.iter()
        .map(|(id, how)| {
            let state = match how {
                Cancel::Now(_) => "cancelled",
                Cancel::Requested { .. } => "cancelling",
            };
            json!({"id": id, "state": state})
        })
        .collect()
}

/// One queue in JSON: its name, a count per state (as `status --json` has them),
/// `running` (its `processing` jobs), `paused` and `concurrency` (null: no limit).
pub fn queue_json(q: &QueueRow) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), json!(q.name));
    for state in JobState::ALL {
        object.insert(state.as_str().into(), json!(q.counts.get(state)));
    }
    object.insert("running".into(), json!(q.counts.get(JobState::Processing)));
    object.insert("paused".into(), json!(q.paused));
    object.insert("concurrency".into(), json!(q.concurrency));
    Value::Object(object)
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
    use std::borrow::Cow;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_000), "12s");
        assert_eq!(age(184_000), "3m04s");
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
    fn times_are_local_and_dated_when_not_today() {
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").expect("tzdb");
        let now = jiff::Timestamp::from_millisecond(1_700_000_000_000).expect("time");
        // 2023-11-14T22:13:20Z is 07:13:20 on the 15th in Tokyo.
        assert_eq!(
            human_time(1_700_000_000_000, now, &tokyo, false),
            "07:13:20"
        );
        assert_eq!(
            human_time(1_700_000_000_000 - 86_400_000, now, &tokyo, false),
            "2023-11-14 07:13:20"
        );
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(human_time(1_700_000_000_000, now, &utc, true), "22:13:20Z");
    }

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(one_line("a\nb\tc\x1b[2J"), "a␤b␉c␛[2J");
    }
}
