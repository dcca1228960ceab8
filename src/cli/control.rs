//! `queuectl cancel`, `retry` and `clean`: controlling jobs after they were queued.
//!
//! Each is one store call, all or nothing: the store refuses the whole request when
//! one id does not fit (unknown, finished for `cancel`, unfinished for `retry`) and
//! names every such id, so a typo never half-applies a command. Input is checked
//! before the store is opened, so bad input (exit 2) changes nothing.

use serde_json::{Value, json};

use super::output::cancel_json;
use super::{Context, printed};
use crate::duration;
use crate::error::{Failure, InputError};
use crate::job::{Cancel, JobState};
use crate::store::CleanRequest;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// Ids (or unique prefixes) of pending, failed or processing jobs
    #[arg(required = true)]
    ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl retry JOB1 JOB2\n  \
    queuectl retry --state cancelled\n  \
    queuectl retry --state dead --state cancelled")]
pub struct RetryArgs {
    /// Ids (or unique prefixes) of finished (completed, dead or cancelled) jobs
    #[arg(required_unless_present = "state", conflicts_with = "state")]
    ids: Vec<String>,

    /// Every job in this finished state: completed, dead or cancelled (repeatable)
    #[arg(long, value_name = "STATE")]
    state: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl clean                         every finished job\n  \
    queuectl clean --state completed --older-than 7d")]
pub struct CleanArgs {
    /// Only jobs in this finished state: completed, dead or cancelled (repeatable;
    /// default: all three)
    #[arg(long, value_name = "STATE")]
    state: Vec<String>,

    /// Only jobs that finished at least DURATION ago (30s, 12h, 7d)
    #[arg(long, value_name = "DURATION")]
    older_than: Option<String>,
}

pub fn cancel(ctx: &Context, args: CancelArgs) -> Result<(), Failure> {
    check_ids(&args.ids)?;
    let mut store = ctx.open()?;
    let ids = super::ids::resolve_all(store.as_mut(), &args.ids)?;
    let plan = store.cancel(&ids)?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(cancel_json(&plan))));
    }
    for (id, how) in &plan {
        let line = match how {
            Cancel::Now(_) => format!("Cancelled: {id}"),
            Cancel::Requested { .. } => {
                format!("Cancelling: {id} (running; its worker stops it)")
            }
        };
        printed(p.line(&line))?;
    }
    Ok(())
}

pub fn retry(ctx: &Context, args: RetryArgs) -> Result<(), Failure> {
    check_ids(&args.ids)?;
    let states = finished_states(&args.state, "retry")?;
    let mut store = ctx.open()?;
    let ids = super::ids::resolve_all(store.as_mut(), &args.ids)?;
    let ids = (!ids.is_empty()).then_some(ids.as_slice());
    let retried = store.retry(ids, &states)?;
    let p = &ctx.printer;
    if p.json {
        let ids: Vec<Value> = retried.iter().map(|id| json!(id)).collect();
        return printed(p.json(&Value::Array(ids)));
    }
    if retried.is_empty() {
        return printed(p.line("No jobs to retry."));
    }
    for id in &retried {
        printed(p.line(&format!("Retried: {id}")))?;
    }
    Ok(())
}

pub fn clean(ctx: &Context, args: CleanArgs) -> Result<(), Failure> {
    let states = finished_states(&args.state, "clean")?;
    let older_than = args
        .older_than
        .as_deref()
        .map(|text| {
            duration::parse(text).ok_or_else(|| {
                InputError::Invalid(format!("--older-than: {}", duration::expected(text)))
            })
        })
        .transpose()?;
    let mut store = ctx.open()?;
    let cleaned = store.clean(&CleanRequest {
        states,
        older_than,
        limit: None,
    })?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&json!({"jobs": cleaned.jobs, "workers": cleaned.workers})));
    }
    printed(p.line(&format!(
        "Deleted {} jobs (and {} stopped workers)",
        cleaned.jobs, cleaned.workers
    )))
}

/// Refuses empty ids (a stray `''` in a script) before anything is changed.
fn check_ids(ids: &[String]) -> Result<(), InputError> {
    if ids.iter().any(|id| id.is_empty()) {
        return Err(InputError::Invalid("an empty job id was given".into()));
    }
    Ok(())
}

/// Parses `--state` values for `command`, which acts on finished jobs only.
fn finished_states(names: &[String], command: &str) -> Result<Vec<JobState>, InputError> {
    let mut states = Vec::with_capacity(names.len());
    for name in names {
        let state: JobState = name.parse()?;
        if !JobState::FINISHED.contains(&state) {
            return Err(InputError::Invalid(format!(
                "{command} --state takes a finished state (completed, dead or cancelled), not '{state}'; `queuectl cancel` stops unfinished jobs"
            )));
        }
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}
