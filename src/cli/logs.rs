//! `queuectl logs`: the output a job's attempts printed, from the store, so it reads
//! the same from any machine that reaches the store.
//!
//! Attempts are numbered from 1 in lease-token order (the order they ran); while a
//! job runs, its running attempt is the last. Output goes to stdout exactly as the
//! command printed it when stdout is not a terminal; on a terminal control
//! characters are made visible ([`super::output::visible`]). `--json` gives the
//! text, and base64 of the exact bytes when they are not valid UTF-8.

use std::io::{IsTerminal, Write};

use base64::Engine;
use serde_json::{Value, json};

use super::follow::{self, Sink};
use super::output::exit_or_signal;
use super::{Context, jobs, printed};
use crate::error::{Failure, InputError};
use crate::job::output::omission_line;
use crate::job::{Job, JobState};
use crate::store::{AttemptRecord, IfMissing, Store};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl logs JOB             the last attempt's output\n  \
    queuectl logs JOB --all       every attempt, each under a header line\n  \
    queuectl logs -f JOB          follow a running job; exits with its exit code\n  \
    queuectl logs JOB --tail 20 --attempt 2")]
pub struct Args {
    /// The job id, or any unique prefix of it
    id: String,

    /// Only attempt N (1 is the first run; default: the last)
    #[arg(long, value_name = "N", conflicts_with = "all")]
    attempt: Option<usize>,

    /// Every attempt, each under a header line `== attempt N (...) ==`
    #[arg(long)]
    all: bool,

    /// Only the last N lines (of each attempt shown)
    #[arg(long, value_name = "N")]
    tail: Option<usize>,

    /// Print what is there, then new output as it comes (into the next attempt if
    /// the job is retried) until the job finishes; exit with its exit code
    #[arg(short = 'f', long, conflicts_with_all = ["attempt", "all"])]
    follow: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    if args.attempt == Some(0) {
        return Err(InputError::Invalid(
            "--attempt counts from 1 (the first run); `queuectl show ID` lists the attempts".into(),
        )
        .into());
    }
    let mut store = ctx.open_to_watch(args.follow, IfMissing::Refuse)?;
    let id = super::ids::resolve(store.as_mut(), &args.id)?;
    let job = jobs::find(store.as_mut(), &id)?;
    if args.follow {
        let sink = Sink::stdout(ctx.printer.json);
        let code = follow::follow(store.as_mut(), &job.id, sink, args.tail)?;
        return exit_with(code);
    }
    let attempts = attempts_of(store.as_mut(), &job)?;
    let chosen: Vec<&Attempt> = match (args.all, args.attempt) {
        (true, _) => attempts.iter().collect(),
        (false, Some(n)) => vec![attempts.get(n - 1).ok_or_else(|| {
            Failure::runtime(format!(
                "job '{}' has {} attempt(s), not {n}; `queuectl show {}` lists them",
                job.id,
                attempts.len(),
                job.id
            ))
        })?],
        (false, None) => attempts.last().into_iter().collect(),
    };
    let mut shown = Vec::with_capacity(chosen.len());
    for attempt in chosen {
        let (mut bytes, total) = read_whole(store.as_mut(), &job.id, attempt.token)?;
        if let Some(n) = args.tail {
            bytes = last_lines(&bytes, n).to_vec();
        }
        shown.push((attempt, bytes, total));
    }
    if ctx.printer.json {
        let objects: Vec<Value> = shown
            .iter()
            .map(|(attempt, bytes, total)| attempt_output_json(attempt, bytes, *total))
            .collect();
        let value = if args.all {
            Value::Array(objects)
        } else {
            objects.into_iter().next().unwrap_or(Value::Null)
        };
        return printed(ctx.printer.json(&value));
    }
    let mut sink = Sink::stdout(false);
    for (attempt, bytes, _) in &shown {
        if args.all {
            printed(sink.header(&attempt.header()))?;
        }
        printed(sink.write(bytes))?;
    }
    printed(sink.end())
}

/// Ends the process with `code` unless it is 0 (the job completed).
pub(super) fn exit_with(code: i32) -> Result<(), Failure> {
    if code == 0 {
        return Ok(());
    }
    let _ = std::io::stdout().flush();
    // The job's own exit code, not an error of ours: nothing more to say.
    std::process::exit(code)
}

/// One attempt of a job: finished (with its record) or running.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// 1 for the first run.
    pub number: usize,
    pub token: i64,
    /// `None` while it runs.
    pub record: Option<AttemptRecord>,
}

impl Attempt {
    /// `== attempt 2 (failed, exit code 3) ==`, or `(running)`.
    pub fn header(&self) -> String {
        let how = match &self.record {
            None => "running".to_owned(),
            Some(record) => match (record.exit_code, record.facts.signal) {
                (None, None) => record.outcome.to_string(),
                (Some(code), None) => format!("{}, exit code {code}", record.outcome),
                (code, signal) => format!("{}, {}", record.outcome, exit_or_signal(code, signal)),
            },
        };
        format!("== attempt {} ({how}) ==", self.number)
    }
}

/// Every attempt of `job` in the order they ran: its history, then the running
/// attempt if it runs.
pub(crate) fn attempts_of(store: &mut dyn Store, job: &Job) -> Result<Vec<Attempt>, Failure> {
    let mut history = store.attempts(&job.id)?;
    history.sort_by_key(|a| a.lease_token);
    let mut attempts: Vec<Attempt> = history
        .into_iter()
        .enumerate()
        .map(|(i, record)| Attempt {
            number: i + 1,
            token: record.lease_token,
            record: Some(record),
        })
        .collect();
    let running = job.state == JobState::Processing
        && attempts.last().is_none_or(|a| a.token < job.lease_token);
    if running {
        attempts.push(Attempt {
            number: attempts.len() + 1,
            token: job.lease_token,
            record: None,
        });
    }
    Ok(attempts)
}

/// An attempt's output as stored, with an omission line for any gap, and how many
/// bytes it printed in all (so far, while it runs).
pub(crate) fn read_whole(
    store: &mut dyn Store,
    job_id: &str,
    token: i64,
) -> Result<(Vec<u8>, u64), Failure> {
    let read = store.output(job_id, token, 0)?;
    let mut bytes = Vec::new();
    let mut end = 0u64;
    for (offset, data) in &read.pieces {
        if *offset > end {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(omission_line(offset - end).as_bytes());
        }
        let skip = usize::try_from(end.saturating_sub(*offset)).unwrap_or(usize::MAX);
        bytes.extend_from_slice(data.get(skip..).unwrap_or_default());
        end = end.max(offset + data.len() as u64);
    }
    let total = if read.finished { read.total } else { end };
    Ok((bytes, total))
}

/// The last `n` lines of `bytes` (a final newline does not start another line).
pub(super) fn last_lines(bytes: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    &bytes[start..]
}

/// The JSON form of output: `output` as text (invalid UTF-8 replaced), with
/// `output_utf8` saying whether that text is exact, and `output_base64` holding the
/// exact bytes when it is not.
pub(super) fn output_fields(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            fields.insert("output".into(), json!(text));
            fields.insert("output_utf8".into(), json!(true));
        }
        Err(_) => {
            fields.insert("output".into(), json!(String::from_utf8_lossy(bytes)));
            fields.insert("output_utf8".into(), json!(false));
            let exact = base64::engine::general_purpose::STANDARD.encode(bytes);
            fields.insert("output_base64".into(), json!(exact));
        }
    }
    fields
}

/// One attempt's output for `logs --json`.
fn attempt_output_json(attempt: &Attempt, bytes: &[u8], total: u64) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("attempt".into(), json!(attempt.number));
    object.insert("lease_token".into(), json!(attempt.token));
    let outcome = attempt
        .record
        .as_ref()
        .map_or("running", |r| r.outcome.as_str());
    object.insert("outcome".into(), json!(outcome));
    object.insert(
        "exit_code".into(),
        json!(attempt.record.as_ref().and_then(|r| r.exit_code)),
    );
    object.extend(output_fields(bytes));
    object.insert("output_total".into(), json!(total));
    Value::Object(object)
}

/// Whether stdout shows output to a person (then control characters are made
/// visible) rather than passing it on to a file or a pipe (then it is exact).
pub(super) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_count_lines_not_newlines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }

    #[test]
    fn invalid_utf8_keeps_its_exact_bytes_in_base64() {
        let fields = output_fields(b"ok\xff\n");
        assert_eq!(fields["output_utf8"], json!(false));
        assert_eq!(fields["output_base64"], json!("b2v/Cg=="));
        assert_eq!(output_fields(b"ok")["output_utf8"], json!(true));
        assert!(!output_fields(b"ok").contains_key("output_base64"));
    }
}
