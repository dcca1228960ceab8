//! `queuectl status` and `show`: reading the queue (`list` is in [`super::list`]).
//!
//! While a job runs, `show` describes the running attempt (`attempt N running`,
//! since when, on which worker) and labels what is left of the attempt before it as
//! `previous`: the job row still holds that attempt's end and exit code until this
//! one ends, and they must not read as this attempt's.

use serde_json::{Value, json};

use super::list::attempts_cell;
use super::output::{Printer, age, attempt_json, exit_or_signal, human_bytes, job_json, visible};
use super::{Context, printed};
use crate::error::{Failure, StoreError};
use crate::job::{Job, JobState};
use crate::store::{AttemptRecord, Store};
use crate::worker::spool::Spool;
use crate::worker::{platform, recovery};

pub use super::list::{ListArgs, list};

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The job id, or any unique prefix of it
    id: String,
}

/// `init`: creates the store if it is missing (and migrates it, as any write
/// would), and says which of the two happened.
pub fn init(ctx: &Context) -> Result<(), Failure> {
    let (store, created) = match ctx.open_to_read() {
        Ok(store) => (store, false),
        Err(_) => (ctx.open()?, true),
    };
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&json!({"store": store.describe(), "created": created})));
    }
    let line = if created {
        format!("Created the store {}", store.describe())
    } else {
        format!(
            "The store {} is ready (it already existed)",
            store.describe()
        )
    };
    printed(p.line(&line))
}

pub fn status(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    // `status` doubles as a recovery pass, so a crashed worker's jobs come back even
    // when no other worker is running.
    let spool = Spool::new(store.spool_dir());
    if let Err(e) = recovery::recover(store.as_mut(), &platform::host_name(), &spool, true) {
        crate::log::warn(&format!("could not recover interrupted jobs: {e}"));
    }
    let counts = store.counts()?;
    let workers = store.workers(false)?;
    let busy = workers.iter().filter(|w| w.job.is_some()).count();
    let oldest_age_ms = counts.oldest_pending_at.map(|at| counts.now - at);
    let p = &ctx.printer;
    if p.json {
        let mut object = serde_json::Map::new();
        for state in JobState::ALL {
            object.insert(state.as_str().into(), json!(counts.get(state)));
        }
        let total: i64 = JobState::ALL.iter().map(|s| counts.get(*s)).sum();
        object.insert("total".into(), json!(total));
        object.insert(
            "workers".into(),
            json!({"live": workers.len(), "busy": busy, "idle": workers.len() - busy}),
        );
        object.insert(
            "oldest_pending_age_seconds".into(),
            oldest_age_ms.map_or(Value::Null, |ms| json!(ms as f64 / 1000.0)),
        );
        object.insert("store".into(), json!(store.describe()));
        return printed(p.json(&Value::Object(object)));
    }
    let rows: Vec<Vec<String>> = JobState::ALL
        .iter()
        .map(|s| vec![p.state(*s), counts.get(*s).to_string()])
        .collect();
    printed(p.table(&["STATE", "JOBS"], &rows))?;
    printed(p.line(""))?;
    printed(p.line(&format!("Workers: {} live ({busy} busy)", workers.len())))?;
    let oldest = oldest_age_ms.map_or("none".to_owned(), |ms| format!("{} ago", age(ms)));
    printed(p.line(&format!("Oldest pending job: {oldest}")))?;
    printed(p.line(&format!("Store: {}", store.describe())))
}

/// Parses `--state`, naming the valid states if it is not one.
pub(super) fn parse_state(state: Option<&str>) -> Result<Option<JobState>, Failure> {
    Ok(state.map(str::parse::<JobState>).transpose()?)
}

pub fn show(ctx: &Context, args: ShowArgs) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    let id = super::ids::resolve(store.as_mut(), &args.id)?;
    let job = find(store.as_mut(), &id)?;
    let mut attempts = store.attempts(&job.id)?;
    attempts.sort_by_key(|a| a.lease_token);
    let p = &ctx.printer;
    if p.json {
        let mut value = job_json(&job);
        if let Some(object) = value.as_object_mut() {
            object.insert("output_tail".into(), json!(job.output_tail));
            let history = attempts
                .iter()
                .enumerate()
                .map(|(i, a)| attempt_json(i + 1, a));
            object.insert("history".into(), Value::Array(history.collect()));
        }
        return printed(p.json(&value));
    }
    let running = job.state == JobState::Processing;
    let field = |name: &str, value: String| format!("{name:<14}{value}");
    let opt = |ms: Option<i64>| ms.map_or("-".to_owned(), |ms| p.time(ms));
    let attempts_text = if running {
        format!(
            "{} ({} finished, max retries {})",
            attempts_cell(&job),
            job.attempts,
            job.max_retries
        )
    } else {
        format!("{} (max retries {})", job.attempts, job.max_retries)
    };
    let mut lines = vec![
        field("id", visible(&job.id).into_owned()),
        field("command", visible(&job.command).into_owned()),
        field("state", p.state(job.state)),
        field("attempts", attempts_text),
        field("directory", visible(&job.cwd).into_owned()),
        field("queue", visible(&job.queue).into_owned()),
        field("priority", job.priority.to_string()),
        field("created", p.time(job.created_at)),
        field("updated", p.time(job.updated_at)),
    ];
    if matches!(job.state, JobState::Pending | JobState::Failed) {
        // A job waiting on others has no time yet: it runs once they completed.
        let next = if job.blocked_by > 0 {
            format!(
                "when the jobs it runs after have completed ({} left)",
                job.blocked_by
            )
        } else {
            p.time(job.next_run_at)
        };
        lines.push(field("next run", next));
    }
    if let Some(at) = job.run_at {
        lines.push(field("run at", p.time(at)));
    }
    if !job.after.is_empty() {
        let ids: Vec<String> = job
            .after
            .iter()
            .map(|id| visible(id).into_owned())
            .collect();
        let waiting = if job.blocked_by > 0 && job.state == JobState::Pending {
            format!(" (waiting for {} of them)", job.blocked_by)
        } else {
            String::new()
        };
        lines.push(field("runs after", format!("{}{waiting}", ids.join(", "))));
    }
    if let Some(key) = &job.unique_key {
        lines.push(field("unique key", visible(key).into_owned()));
    }
    for (key, value) in job.env.iter().flatten() {
        lines.push(field(
            "env",
            visible(&format!("{key}={value}")).into_owned(),
        ));
    }
    if job.interruptions > 0 {
        lines.push(field(
            "interrupted",
            format!("{} time(s)", job.interruptions),
        ));
    }
    if let Some(worker) = &job.worker_id {
        lines.push(field("worker", visible(worker).into_owned()));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    match job.started_at {
        Some(start) if running => lines.push(field(
            "started",
            format!("{} (running for {})", p.time(start), age(now - start)),
        )),
        start => lines.push(field("started", opt(start))),
    }
    if !running {
        lines.push(field("finished", opt(job.finished_at)));
    }
    if let Some(ms) = job.timeout_ms {
        lines.push(field("timeout", duration_text(ms)));
    }
    if running {
        if let Some(deadline) = job.deadline_at {
            lines.push(field("deadline", p.time(deadline)));
        }
        if job.cancel_requested {
            lines.push(field(
                "cancel",
                "requested; its worker is stopping it".into(),
            ));
        }
    }
    if running {
        // The job row still holds the previous attempt's end: say whose it is.
        if let Some(previous) = attempts.last() {
            lines.push(field("previous", previous_text(ctx, previous)));
        }
    } else {
        if let Some(code) = job.exit_code {
            lines.push(field("exit code", code.to_string()));
        }
        if let Some(error) = &job.last_error {
            lines.push(field("last error", visible(error).into_owned()));
        }
    }
    for line in lines {
        printed(p.line(&line))?;
    }
    if !attempts.is_empty() {
        printed(p.line("\nAttempts:"))?;
        let mut rows: Vec<Vec<String>> = attempts
            .iter()
            .enumerate()
            .map(|(i, a)| attempt_row(p, i + 1, a))
            .collect();
        if running {
            rows.push(running_row(p, attempts.len() + 1, &job, now));
        }
        printed(p.table(
            &[
                "#", "OUTCOME", "EXIT", "DURATION", "HOST", "PID", "MAX RSS", "CPU", "STARTED",
            ],
            &rows,
        ))?;
    }
    if let Some(tail) = job.output_tail.as_deref().filter(|t| !t.is_empty()) {
        // The tail is the newest finished attempt's: not this one's while it runs.
        let title = if running {
            "\nOutput of the previous attempt (last lines; `queuectl logs -f` follows this one):"
        } else {
            "\nOutput (last lines):"
        };
        printed(p.line(title))?;
        printed(p.line(&visible(tail.trim_end_matches('\n'))))?;
    }
    Ok(())
}

/// One row of `show`'s attempts table; `-` for what is not known (an attempt
/// recorded before this was measured, or one whose worker vanished).
fn attempt_row(p: &Printer, number: usize, a: &AttemptRecord) -> Vec<String> {
    let dash = || "-".to_owned();
    let facts = &a.facts;
    vec![
        number.to_string(),
        a.outcome.to_string(),
        exit_or_signal(a.exit_code, facts.signal),
        a.started_at
            .map_or_else(dash, |start| duration_text(a.finished_at - start)),
        facts
            .host
            .as_deref()
            .map_or_else(dash, |h| visible(h).into_owned()),
        facts.pid.map_or_else(dash, |pid| pid.to_string()),
        facts.max_rss_kb.map_or_else(dash, |kb| {
            human_bytes(u64::try_from(kb).unwrap_or(0) * 1024)
        }),
        facts.cpu_ms.map_or_else(dash, duration_text),
        a.started_at.map_or_else(dash, |ms| p.time(ms)),
    ]
}

/// The attempts table's row for the attempt that runs now: its duration so far;
/// what the worker measures (pid, memory, CPU) is recorded when it ends.
fn running_row(p: &Printer, number: usize, job: &Job, now: i64) -> Vec<String> {
    let dash = || "-".to_owned();
    vec![
        number.to_string(),
        "running".to_owned(),
        dash(),
        job.started_at
            .map_or_else(dash, |start| duration_text(now - start)),
        dash(),
        dash(),
        dash(),
        dash(),
        job.started_at.map_or_else(dash, |ms| p.time(ms)),
    ]
}

/// How the attempt before the running one ended, for `show`'s `previous` line:
/// `failed at 14:03:18: exit code 1`.
fn previous_text(ctx: &Context, a: &AttemptRecord) -> String {
    let how = match (&a.error, a.exit_code) {
        (Some(error), _) => visible(error).into_owned(),
        (None, Some(code)) if a.facts.signal.is_none() => format!("exit code {code}"),
        (None, _) => exit_or_signal(a.exit_code, a.facts.signal),
    };
    format!(
        "{} at {}: {how}",
        a.outcome,
        ctx.printer.time(a.finished_at)
    )
}

/// Milliseconds as `crate::duration::human` writes them (negative: 0).
fn duration_text(ms: i64) -> String {
    crate::duration::human(std::time::Duration::from_millis(
        u64::try_from(ms).unwrap_or(0),
    ))
}

pub(super) fn find(store: &mut dyn Store, id: &str) -> Result<Job, Failure> {
    store
        .job(id)?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()).into())
}
