//! Following a job's output live (`logs -f`, `enqueue --wait`): prints what is
//! there, then what its worker ships while the attempt runs (at most once a second),
//! into the next attempt when the job is retried, until the job finishes.
//!
//! Invariant: every byte the command printed is shown at most once, in order; what
//! the store dropped (past `output-limit`) is shown as one omission line. Offsets
//! count bytes of the attempt's whole output, so after the attempt ends its kept
//! output (head, omission line, tail) is mapped back onto them ([`rest_of_kept`]).

use std::io::{self, Write};

use serde_json::json;

use super::logs::{self, Attempt};
use super::watch::{INTERRUPTED, Watch};
use crate::error::Failure;
use crate::job::output::omission_line;
use crate::job::{Job, JobState};
use crate::store::Store;

/// Where followed output goes: stdout exactly (a pipe or file), stdout made visible
/// (a terminal), or one JSON object per piece (`--json`).
pub(super) struct Sink {
    mode: Mode,
    /// The attempt being printed, for JSON lines: (number, lease token).
    attempt: (usize, i64),
    /// Where the next byte of that attempt starts, for JSON lines.
    offset: u64,
    /// Whether the last byte written ended a line (or nothing was written).
    at_line_start: bool,
    /// The start of a UTF-8 character split between two pieces (terminal only).
    carry: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exact,
    Visible,
    JsonLines,
}

impl Sink {
    /// A sink on stdout: JSON lines with `json`, else exact or visible bytes.
    pub fn stdout(json: bool) -> Sink {
        let mode = match (json, logs::stdout_is_terminal()) {
            (true, _) => Mode::JsonLines,
            (false, true) => Mode::Visible,
            (false, false) => Mode::Exact,
        };
        Sink {
            mode,
            attempt: (0, 0),
            offset: 0,
            at_line_start: true,
            carry: Vec::new(),
        }
    }

    /// Starts `attempt` at `offset`; the header line is printed only between
    /// attempts, not before the first.
    fn begin(&mut self, attempt: &Attempt, offset: u64, with_header: bool) -> io::Result<()> {
        self.end()?;
        self.attempt = (attempt.number, attempt.token);
        self.offset = offset;
        if with_header {
            self.header_between_attempts(&attempt.header())?;
        }
        Ok(())
    }

    /// A header line of ours (`== attempt 2 (running) ==`) on stdout, on a line of
    /// its own, for `logs --all`, whose listing is the output. JSON lines have
    /// none: each object names its attempt.
    pub fn header(&mut self, line: &str) -> io::Result<()> {
        if self.mode == Mode::JsonLines {
            return Ok(());
        }
        self.end()?;
        let mut out = io::stdout().lock();
        if !self.at_line_start {
            out.write_all(b"\n")?;
        }
        writeln!(out, "{line}")?;
        self.at_line_start = true;
        out.flush()
    }

    /// While following, the header of the next attempt (`== attempt 2 (running)
    /// ==`), on stderr: stdout
    /// carries exactly the job's output, so `enqueue --wait -- make > log` or
    /// `logs -f ID | grep` see only what the command printed. On a terminal, where
    /// both meet, the header starts a line of its own. JSON lines have none: each
    /// object names its attempt.
    fn header_between_attempts(&mut self, line: &str) -> io::Result<()> {
        if self.mode == Mode::JsonLines {
            return Ok(());
        }
        self.end()?;
        let mut out = io::stdout().lock();
        if self.mode == Mode::Visible && !self.at_line_start {
            out.write_all(b"\n")?;
            self.at_line_start = true;
        }
        out.flush()?;
        let mut err = io::stderr().lock();
        writeln!(err, "{}", super::output::visible(line))?;
        err.flush()
    }

    /// Writes output bytes (and flushes: a follower shows them as they come).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = io::stdout().lock();
        match self.mode {
            Mode::Exact => out.write_all(bytes)?,
            Mode::Visible => {
                self.carry.extend_from_slice(bytes);
                let valid = match std::str::from_utf8(&self.carry) {
                    Ok(_) => self.carry.len(),
                    // An incomplete character at the end waits for the next piece.
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => self.carry.len(),
                };
                let text = String::from_utf8_lossy(&self.carry[..valid]);
                out.write_all(super::output::visible(&text).as_bytes())?;
                self.carry.drain(..valid);
            }
            Mode::JsonLines => {
                let (number, token) = self.attempt;
                let mut object = serde_json::Map::new();
                object.insert("attempt".into(), json!(number));
                object.insert("lease_token".into(), json!(token));
                object.insert("offset".into(), json!(self.offset));
                object.extend(logs::output_fields(bytes));
                serde_json::to_writer(&mut out, &object)?;
                out.write_all(b"\n")?;
            }
        }
        self.offset += bytes.len() as u64;
        self.at_line_start = bytes.ends_with(b"\n");
        out.flush()
    }

    /// The last lines of `attempt`'s output, which ends at byte `end`.
    fn write_tail(&mut self, attempt: &Attempt, lines: &[u8], end: u64) -> Result<(), Failure> {
        self.attempt = (attempt.number, attempt.token);
        self.offset = end.saturating_sub(lines.len() as u64);
        printed(self.write(lines))
    }

    /// An omission line for `omitted` bytes the store no longer has.
    fn omitted(&mut self, omitted: u64) -> io::Result<()> {
        if !self.at_line_start {
            self.write(b"\n")?;
        }
        let offset = self.offset;
        self.write(omission_line(omitted).as_bytes())?;
        self.offset = offset + omitted;
        Ok(())
    }

    /// Ends the current attempt: a character left incomplete is shown as is.
    pub fn end(&mut self) -> io::Result<()> {
        if self.carry.is_empty() {
            return Ok(());
        }
        let rest = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        let mut out = io::stdout().lock();
        out.write_all(super::output::visible(&rest).as_bytes())?;
        out.flush()
    }
}

/// Follows job `job_id` until it finishes; returns the exit code to end with: 0
/// when it completed, its last exit code (or 1) when it ended dead or cancelled,
/// [`INTERRUPTED`] on Ctrl-C. `tail`: show only the last N lines of what is there
/// at the start.
pub(super) fn follow(
    store: &mut dyn Store,
    job_id: &str,
    mut sink: Sink,
    tail: Option<usize>,
) -> Result<i32, Failure> {
    let mut watch = Watch::new(store);
    // The attempt being printed and how many of its bytes were shown.
    let mut current: Option<(Attempt, u64)> = None;
    // The newest attempt whose output has been printed to its end.
    let mut done_token: Option<i64> = None;
    let mut first = true;
    loop {
        if watch.interrupted() {
            let _ = sink.end();
            return Ok(INTERRUPTED);
        }
        let job = store
            .job(job_id)?
            .ok_or_else(|| Failure::runtime(format!("job '{job_id}' was deleted")))?;
        let attempts = logs::attempts_of(store, &job)?;
        if current.is_none() {
            // The next attempt to print: at the start the newest, later the one
            // after the last printed.
            let next = match done_token {
                None if first => attempts.last(),
                None => attempts.first(),
                Some(done) => attempts.iter().find(|a| a.token > done),
            };
            if let Some(attempt) = next {
                let start = if first {
                    tail_start(store, job_id, attempt, tail, &mut sink)?
                } else {
                    0
                };
                // A header only between attempts: the first one's output stands alone.
                printed(sink.begin(attempt, start, done_token.is_some()))?;
                current = Some((attempt.clone(), start));
            }
            first = false;
        }
        if let Some((attempt, shown)) = current.as_mut() {
            if print_new(store, job_id, attempt.token, shown, &mut sink)? {
                done_token = Some(attempt.token);
                current = None;
                continue; // a next attempt may already be there
            }
        } else if !job.state.is_unfinished() {
            printed(sink.end())?;
            return Ok(final_code(&job));
        }
        watch.wait(None);
    }
}

/// Prints output of attempt `token` past `shown` bytes; returns whether the attempt
/// has ended (all of its output printed).
fn print_new(
    store: &mut dyn Store,
    job_id: &str,
    token: i64,
    shown: &mut u64,
    sink: &mut Sink,
) -> Result<bool, Failure> {
    let read = store.output(job_id, token, *shown)?;
    if read.finished {
        // The kept output replaced the pieces: read it whole and map it back onto
        // the offsets already shown.
        let whole = if *shown == 0 {
            read
        } else {
            store.output(job_id, token, 0)?
        };
        let kept: Vec<u8> = whole
            .pieces
            .into_iter()
            .flat_map(|(_, data)| data)
            .collect();
        let (gap, rest) = rest_of_kept(&kept, whole.total, *shown);
        if let Some(omitted) = gap {
            printed(sink.omitted(omitted))?;
        }
        printed(sink.write(rest))?;
        *shown = whole.total;
        return Ok(true);
    }
    for (offset, data) in &read.pieces {
        let end = offset + data.len() as u64;
        if end <= *shown {
            continue;
        }
        if *offset > *shown {
            printed(sink.omitted(offset - *shown))?;
            *shown = *offset;
        }
        let skip = usize::try_from(*shown - offset).unwrap_or(usize::MAX);
        printed(sink.write(data.get(skip..).unwrap_or_default()))?;
        *shown = end;
    }
    Ok(false)
}

/// Where printing starts in the attempt first shown: 0, or with `--tail N` the end,
/// after printing its last N lines.
fn tail_start(
    store: &mut dyn Store,
    job_id: &str,
    attempt: &Attempt,
    tail: Option<usize>,
    sink: &mut Sink,
) -> Result<u64, Failure> {
    let Some(n) = tail else { return Ok(0) };
    let read = store.output(job_id, attempt.token, 0)?;
    if read.finished {
        // Printed whole by the caller's next read; tail it here instead.
        let kept: Vec<u8> = read.pieces.into_iter().flat_map(|(_, data)| data).collect();
        sink.write_tail(attempt, logs::last_lines(&kept, n), read.total)?;
        return Ok(read.total);
    }
    let (bytes, total) = logs::read_whole(store, job_id, attempt.token)?;
    sink.write_tail(attempt, logs::last_lines(&bytes, n), total)?;
    Ok(total)
}

/// What is left to print of a finished attempt's kept output when the first `shown`
/// bytes of everything it printed (`total`) were already printed while it ran: an
/// omission line for bytes no longer kept (`Some(n)`), then the bytes to print.
///
/// The kept output is either everything (`kept.len() == total`) or head, omission
/// line (after a newline added if the head lacks one) and tail
/// ([`crate::job::output::keep`]); the omission line is found by the byte count it
/// states, which must make head, omitted and tail add up to `total`.
pub(super) fn rest_of_kept(kept: &[u8], total: u64, shown: u64) -> (Option<u64>, &[u8]) {
    let len = kept.len() as u64;
    if shown == 0 {
        return (None, kept);
    }
    if len == total {
        return (
            None,
            kept.get(shown.min(len) as usize..).unwrap_or_default(),
        );
    }
    if let Some((head, line_end, tail)) = split_kept(kept, total) {
        let tail_start = total - tail;
        if shown <= head {
            return (None, &kept[shown as usize..]);
        }
        if shown >= tail_start {
            let skip = (shown - tail_start).min(tail) as usize;
            return (None, &kept[line_end + skip..]);
        }
        return (Some(tail_start - shown), &kept[line_end..]);
    }
    // Not a shape we know: say how much is missing rather than guess.
    (Some(total.saturating_sub(shown)), &[])
}

/// Finds the omission line in `kept`: (head bytes, where the line ends, tail bytes).
fn split_kept(kept: &[u8], total: u64) -> Option<(u64, usize, u64)> {
    const START: &[u8] = b"[... ";
    const END: &[u8] = b" bytes omitted ...]\n";
    let mut from = 0;
    while let Some(found) = find(&kept[from..], START) {
        let at = from + found;
        from = at + 1;
        if at > 0 && kept[at - 1] != b'\n' {
            continue;
        }
        let digits_end = at
            + START.len()
            + kept[at + START.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let Some(omitted) = std::str::from_utf8(&kept[at + START.len()..digits_end])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        if !kept[digits_end..].starts_with(END) {
            continue;
        }
        let line_end = digits_end + END.len();
        let tail = (kept.len() - line_end) as u64;
        // The head, or the head plus the newline `keep` added after it.
        for head in [at as u64, (at as u64).saturating_sub(1)] {
            if head + omitted + tail == total {
                return Some((head, line_end, tail));
            }
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The exit code that stands for a finished job: 0 when it completed, else its
/// last exit code when that is one a process can exit with, else 1.
pub(super) fn final_code(job: &Job) -> i32 {
    match job.state {
        JobState::Completed => 0,
        _ => job
            .exit_code
            .and_then(|code| i32::try_from(code).ok())
            .filter(|code| (1..=255).contains(code))
            .unwrap_or(1),
    }
}

fn printed(result: io::Result<()>) -> Result<(), Failure> {
    super::printed(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::output::keep;

    #[test]
    fn whole_output_continues_where_it_stopped() {
        assert_eq!(rest_of_kept(b"abcdef", 6, 4), (None, &b"ef"[..]));
        assert_eq!(rest_of_kept(b"abcdef", 6, 0), (None, &b"abcdef"[..]));
    }

    #[test]
    fn cut_output_maps_back_onto_the_bytes_printed() {
        // 100 bytes printed, 10 kept of the head and 10 of the tail.
        let head = b"0123456789";
        let tail = b"tail56789\n";
        let kept = keep(head, tail, 100, 20).bytes;
        let line_end = kept.len() - tail.len();
        // Still in the head: the rest of the head, the omission line, the tail.
        assert_eq!(rest_of_kept(&kept, 100, 4), (None, &kept[4..]));
        // Between head and tail: an omission line for the gap, then the tail.
        assert_eq!(rest_of_kept(&kept, 100, 50), (Some(40), &kept[line_end..]));
        // Inside the tail: only what is new.
        assert_eq!(rest_of_kept(&kept, 100, 95), (None, &b"6789\n"[..]));
    }

    #[test]
    fn an_unknown_shape_reports_what_is_missing() {
        assert_eq!(rest_of_kept(b"short", 100, 10), (Some(90), &b""[..]));
    }

    #[test]
    fn final_codes_follow_the_job() {
        let mut job = Job::pending(
            crate::job::NewJob::new("j".into(), "true".into(), "/".into()),
            0,
            0,
        );
        job.state = JobState::Completed;
        assert_eq!(final_code(&job), 0);
        job.state = JobState::Dead;
        job.exit_code = Some(3);
        assert_eq!(final_code(&job), 3);
        job.exit_code = None;
        assert_eq!(final_code(&job), 1);
        job.state = JobState::Cancelled;
        job.exit_code = Some(-1);
        assert_eq!(final_code(&job), 1);
    }
}
