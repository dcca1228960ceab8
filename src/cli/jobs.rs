//! `queuectl status`, `list` and `show`: reading the queue.

use serde_json::{Value, json};

use super::output::{
    age, attempt_json, exit_or_signal, human_bytes, job_json, timestamp, truncate, visible,
};
use super::{Context, printed};
use crate::error::{Failure, StoreError};
use crate::job::{Job, JobState};
use crate::store::{AttemptRecord, Store};
use crate::worker::exec::Spool;
use crate::worker::{platform, recovery};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state: pending, processing, completed, failed, dead or
    /// cancelled
    #[arg(long)]
    state: Option<String>,

    /// At most N jobs (oldest first)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The job id, or any unique prefix of it
    id: String,
}

pub fn status(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open()?;
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

pub fn list(ctx: &Context, args: ListArgs) -> Result<(), Failure> {
    let state = parse_state(args.state.as_deref())?;
    let mut store = ctx.open()?;
    let jobs = store.list(state, args.limit)?;
    print_jobs(ctx, &jobs)
}

/// Parses `--state`, naming the valid states if it is not one.
pub(super) fn parse_state(state: Option<&str>) -> Result<Option<JobState>, Failure> {
    Ok(state.map(str::parse::<JobState>).transpose()?)
}

/// Prints jobs as a JSON array or a table; shared with `dlq list`.
pub(super) fn print_jobs(ctx: &Context, jobs: &[Job]) -> Result<(), Failure> {
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(jobs.iter().map(job_json).collect())));
    }
    if jobs.is_empty() {
        return printed(p.line("No jobs."));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                visible(&j.id).into_owned(),
                p.state(j.state),
                format!("{}/{}", j.attempts, j.max_retries + 1),
                visible(&j.queue).into_owned(),
                j.priority.to_string(),
                runs(j, now),
                timestamp(j.updated_at),
                truncate(&j.command, 40),
                truncate(j.last_error.as_deref().unwrap_or(""), 40),
            ]
        })
        .collect();
    printed(p.table(
        &[
            "ID",
            "STATE",
            "ATTEMPTS",
            "QUEUE",
            "PRIORITY",
            "RUNS",
            "UPDATED",
            "COMMAND",
            "LAST ERROR",
        ],
        &rows,
    ))
}

/// When a waiting job will run, as `list` shows it: its time when that is still
/// ahead, `after N job(s)` while it waits for others, else `-`.
fn runs(job: &Job, now: i64) -> String {
    if !matches!(job.state, JobState::Pending | JobState::Failed) {
        return "-".into();
    }
    if job.blocked_by > 0 {
        return format!("after {} job(s)", job.blocked_by);
    }
    if job.next_run_at > now {
        return timestamp(job.next_run_at);
    }
    "now".into()
}

pub fn show(ctx: &Context, args: ShowArgs) -> Result<(), Failure> {
    let mut store = ctx.open()?;
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
    let field = |name: &str, value: String| format!("{name:<14}{value}");
    let opt = |ms: Option<i64>| ms.map_or("-".to_owned(), timestamp);
    let mut lines = vec![
        field("id", job.id.clone()),
        field("command", visible(&job.command).into_owned()),
        field("state", p.state(job.state)),
        field(
            "attempts",
            format!("{} (max retries {})", job.attempts, job.max_retries),
        ),
        field("directory", visible(&job.cwd).into_owned()),
        field("queue", visible(&job.queue).into_owned()),
        field("priority", job.priority.to_string()),
        field("created", timestamp(job.created_at)),
        field("updated", timestamp(job.updated_at)),
    ];
    if matches!(job.state, JobState::Pending | JobState::Failed) {
        lines.push(field("next run", timestamp(job.next_run_at)));
    }
    if let Some(at) = job.run_at {
        lines.push(field("run at", timestamp(at)));
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
        lines.push(field("worker", worker.clone()));
    }
    lines.push(field("started", opt(job.started_at)));
    lines.push(field("finished", opt(job.finished_at)));
    if let Some(ms) = job.timeout_ms {
        lines.push(field("timeout", duration_text(ms)));
    }
    if job.state == JobState::Processing {
        if let Some(deadline) = job.deadline_at {
            lines.push(field("deadline", timestamp(deadline)));
        }
        if job.cancel_requested {
            lines.push(field(
                "cancel",
                "requested; its worker is stopping it".into(),
            ));
        }
    }
    if let Some(code) = job.exit_code {
        lines.push(field("exit code", code.to_string()));
    }
    if let Some(error) = &job.last_error {
        lines.push(field("last error", visible(error).into_owned()));
    }
    for line in lines {
        printed(p.line(&line))?;
    }
    if !attempts.is_empty() {
        printed(p.line("\nAttempts:"))?;
        let rows: Vec<Vec<String>> = attempts
            .iter()
            .enumerate()
            .map(|(i, a)| attempt_row(i + 1, a))
            .collect();
        printed(p.table(
            &[
                "#", "OUTCOME", "EXIT", "DURATION", "HOST", "PID", "MAX RSS", "CPU", "STARTED",
            ],
            &rows,
        ))?;
    }
    if let Some(tail) = job.output_tail.as_deref().filter(|t| !t.is_empty()) {
        printed(p.line("\nOutput (last lines):"))?;
        printed(p.line(&visible(tail.trim_end_matches('\n'))))?;
    }
    Ok(())
}

/// One row of `show`'s attempts table; `-` for what is not known (an attempt
/// recorded before this was measured, or one whose worker vanished).
fn attempt_row(number: usize, a: &AttemptRecord) -> Vec<String> {
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
        a.started_at.map_or_else(dash, timestamp),
    ]
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
