//! `export` and `import`: jobs with their attempt history as JSON lines, to move a
//! queue between stores (a laptop's SQLite to a team's PostgreSQL, or back).
//!
//! One JSON object per line holds every field of a job plus `attempts_history`, the
//! job's attempts with their output tails. Times are RFC 3339 UTC with milliseconds,
//! like everywhere else in queuectl, so they round-trip exactly. Parsing is strict
//! (unknown fields are refused): a file that does not say exactly what we store is
//! not imported half-understood.
//!
//! What an import changes, decided here and not in the stores:
//! - A job exported while `processing` is imported as `pending`: its run belongs to
//!   the old store (and whatever worker ran it there), so in the new store it simply
//!   waits to be claimed again. No attempt is used up.
//! - `lease_token` is raised to at least the newest attempt's, so the next claim's
//!   token (token + 1) never collides with an imported attempt.
//! - No lease is imported: `lease_expires_at` is always empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::job::{self, Job, JobState};
use crate::store::{AttemptFacts, AttemptRecord, JobRecord};

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    command: String,
    cwd: String,
    state: JobState,
    attempts: i64,
    max_retries: i64,
    interruptions: i64,
    created_at: String,
    updated_at: String,
    next_run_at: String,
    exit_code: Option<i64>,
    last_error: Option<String>,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    finished_at: Option<String>,
    /// The newest claim's fencing token (claims that never ran leave no attempt).
    #[serde(default)]
    lease_token: i64,
    /// Absent in exports made before timeouts existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<i64>,
    // The scheduling options (issue 11); absent in older exports, which had none.
    #[serde(default)]
    priority: i64,
    #[serde(default = "default_queue")]
    queue: String,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    unique_key: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    attempts_history: Vec<AttemptLine>,
}

fn default_queue() -> String {
    job::options::DEFAULT_QUEUE.to_owned()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptLine {
    attempt_token: i64,
    worker: Option<String>,
    started_at: Option<String>,
    finished_at: String,
    outcome: String,
    exit_code: Option<i64>,
    error: Option<String>,
    output_tail: Option<String>,
    // What the worker saw of the attempt's process; absent in older exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_rss_kb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_total: Option<i64>,
}

/// One job as one line of JSON (no trailing newline).
pub fn to_line(record: &JobRecord) -> String {
    let j = &record.job;
    let line = Line {
        id: j.id.clone(),
        command: j.command.clone(),
        cwd: j.cwd.clone(),
        state: j.state,
        attempts: j.attempts,
        max_retries: j.max_retries,
        interruptions: j.interruptions,
        created_at: timestamp(j.created_at),
        updated_at: timestamp(j.updated_at),
        next_run_at: timestamp(j.next_run_at),
        exit_code: j.exit_code,
        last_error: j.last_error.clone(),
        worker: j.worker_id.clone(),
        started_at: j.started_at.map(timestamp),
        finished_at: j.finished_at.map(timestamp),
        lease_token: j.lease_token,
        timeout_ms: j.timeout_ms,
        priority: j.priority,
        queue: j.queue.clone(),
        run_at: j.run_at.map(timestamp),
        after: j.after.clone(),
        unique_key: j.unique_key.clone(),
        env: j.env.clone(),
        attempts_history: record
            .attempts
            .iter()
            .map(|a| AttemptLine {
                attempt_token: a.lease_token,
                worker: a.worker_id.clone(),
                started_at: a.started_at.map(timestamp),
                finished_at: timestamp(a.finished_at),
                outcome: a.outcome.as_str().to_owned(),
                exit_code: a.exit_code,
                error: a.error.clone(),
                output_tail: a.output_tail.clone(),
                host: a.facts.host.clone(),
                pid: a.facts.pid,
                signal: a.facts.signal,
                max_rss_kb: a.facts.max_rss_kb,
                cpu_ms: a.facts.cpu_ms,
                output_total: a.output_total,
            })
            .collect(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// Parses and validates one line of an export, and prepares it for import (see the
/// module docs). Also says whether the job was `processing` in the old store (and so
/// is `pending` now). The error says what is wrong, not where: callers add the line
/// number.
pub fn from_line(text: &str) -> Result<(JobRecord, bool), InputError> {
    let line: Line = serde_json::from_str(text).map_err(|e| InputError::Invalid(e.to_string()))?;
    let id = job::validate_id(&line.id)?;
    let command = job::validate_command(&line.command)?;
    job::validate_max_retries(line.max_retries)?;
    for (name, value) in [
        ("attempts", line.attempts),
        ("interruptions", line.interruptions),
        ("lease_token", line.lease_token),
    ] {
        if value < 0 {
            return Err(InputError::Invalid(format!(
                "{name} must be 0 or more, got {value}"
            )));
        }
    }
    if let Some(ms) = line.timeout_ms {
        job::spec::validate_timeout(job::spec::DurationSpec::Seconds(ms as f64 / 1000.0))?;
    }
    let mut attempts = Vec::with_capacity(line.attempts_history.len());
    for a in line.attempts_history {
        if a.attempt_token < 1 {
            return Err(InputError::Invalid(format!(
                "attempt_token must be 1 or more, got {}",
                a.attempt_token
            )));
        }
        if attempts
            .iter()
            .any(|b: &AttemptRecord| b.lease_token == a.attempt_token)
        {
            return Err(InputError::Invalid(format!(
                "attempt_token {} appears twice in attempts_history",
                a.attempt_token
            )));
        }
        attempts.push(AttemptRecord {
            lease_token: a.attempt_token,
            worker_id: a.worker,
            started_at: a.started_at.as_deref().map(millis).transpose()?,
            finished_at: millis(&a.finished_at)?,
            outcome: a.outcome.parse()?,
            exit_code: a.exit_code,
            error: a.error,
            output_tail: a.output_tail,
            facts: AttemptFacts {
                host: a.host,
                pid: a.pid,
                signal: a.signal,
                max_rss_kb: a.max_rss_kb,
                cpu_ms: a.cpu_ms,
            },
            output_total: a.output_total,
        });
    }
    attempts.sort_by_key(|a| a.lease_token);
    let newest = attempts.last().map_or(0, |a| a.lease_token);
    let requeued = line.state == JobState::Processing;
    let state = match line.state {
        // Its run belongs to the old store: here it waits to be claimed again.
        JobState::Processing => JobState::Pending,
        state => state,
    };
    let record = JobRecord {
        job: Job {
            id,
            command,
            cwd: line.cwd,
            state,
            attempts: line.attempts,
            max_retries: line.max_retries,
            interruptions: line.interruptions,
            created_at: millis(&line.created_at)?,
            updated_at: millis(&line.updated_at)?,
            next_run_at: millis(&line.next_run_at)?,
            lease_token: line.lease_token.max(newest),
            lease_expires_at: None,
            worker_id: line.worker,
            started_at: line.started_at.as_deref().map(millis).transpose()?,
            finished_at: line.finished_at.as_deref().map(millis).transpose()?,
            exit_code: line.exit_code,
            last_error: line.last_error,
            timeout_ms: line.timeout_ms,
            deadline_at: None,
            cancel_requested: false,
            priority: job::options::validate_priority(line.priority)?,
            queue: job::options::validate_queue(&line.queue)?,
            run_at: line.run_at.as_deref().map(millis).transpose()?,
            unique_key: line
                .unique_key
                .as_deref()
                .map(job::options::validate_unique_key)
                .transpose()?,
            env: line.env.map(job::options::validate_env).transpose()?,
            blocked_by: 0,
            after: job::options::validate_after(line.after)?,
            output_tail: None,
        },
        attempts,
    };
    Ok((record, requeued))
}

/// RFC 3339, UTC, millisecond precision, with `Z` (as `show --json` prints times).
fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn millis(text: &str) -> Result<i64, InputError> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            InputError::Invalid(format!(
                "'{text}' is not an RFC 3339 time like 2025-01-31T12:00:00.000Z: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: JobState) -> JobRecord {
        JobRecord {
            job: Job {
                id: "j1".into(),
                command: "echo hi".into(),
                cwd: "/tmp".into(),
                state,
                attempts: 1,
                max_retries: 3,
                interruptions: 0,
                created_at: 1_700_000_000_123,
                updated_at: 1_700_000_001_456,
                next_run_at: 1_700_000_002_789,
                lease_token: 2,
                lease_expires_at: Some(1_700_000_009_000),
                worker_id: Some("w-1".into()),
                started_at: Some(1_700_000_001_000),
                finished_at: None,
                exit_code: Some(1),
                last_error: Some("exit code 1".into()),
                timeout_ms: Some(30_000),
                deadline_at: None,
                cancel_requested: false,
                priority: -5,
                queue: "batch".into(),
                run_at: Some(1_700_000_002_789),
                unique_key: Some("nightly".into()),
                env: Some([("A".to_owned(), "b c".to_owned())].into()),
                blocked_by: 0,
                after: vec!["j0".into()],
                output_tail: None,
            },
            attempts: vec![AttemptRecord {
                lease_token: 1,
                worker_id: Some("w-1".into()),
                started_at: Some(1_700_000_000_500),
                finished_at: 1_700_000_000_900,
                outcome: job::AttemptOutcome::Failed,
                exit_code: Some(1),
                error: Some("exit code 1".into()),
                output_tail: Some("boom\n".into()),
                facts: AttemptFacts {
                    host: Some("vm".into()),
                    pid: Some(4242),
                    signal: None,
                    max_rss_kb: Some(2048),
                    cpu_ms: Some(3),
                },
                output_total: Some(5),
            }],
        }
    }

    #[test]
    fn a_line_round_trips_exactly_except_the_lease() {
        let original = record(JobState::Failed);
        let (back, requeued) = from_line(&to_line(&original)).expect("valid line");
        assert!(!requeued);
        let mut expected = original;
        expected.job.lease_expires_at = None;
        assert_eq!(back, expected);
    }

    #[test]
    fn processing_becomes_pending_and_tokens_stay_ahead() {
        let mut original = record(JobState::Processing);
        original.job.lease_token = 0;
        let (back, requeued) = from_line(&to_line(&original)).expect("valid line");
        assert!(requeued);
        assert_eq!(back.job.state, JobState::Pending);
        assert_eq!(back.job.lease_token, 1, "at least the newest attempt's");
        assert_eq!(back.job.lease_expires_at, None);
        assert_eq!(back.job.attempts, 1, "no attempt used up");
    }

    #[test]
    fn bad_lines_are_refused() {
        let good = to_line(&record(JobState::Completed));
        let cases = [
            ("{", "EOF"),
            (
                &good.replace("\"cwd\"", "\"extra\":1,\"cwd\""),
                "unknown field",
            ),
            (
                &good.replace("\"completed\"", "\"done\""),
                "unknown variant",
            ),
            (&good.replace("\"failed\"", "\"exploded\""), "outcome"),
            (
                &good.replace("\"command\":\"echo hi\"", "\"command\":\" \""),
                "empty",
            ),
            (
                &good.replace("2023-11-14T22:13:20.123Z", "yesterday"),
                "RFC 3339",
            ),
        ];
        for (line, why) in cases {
            let err = from_line(line).expect_err(line).to_string();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
