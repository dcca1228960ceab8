//! `queuectl dlq`: the dead letter queue, where jobs land when their attempts (or
//! interruptions) are used up.

use serde_json::{Value, json};

use super::output::{job_json, one_line};
use super::{Context, printed};
use crate::error::{Failure, InputError};
use crate::job::JobState;

/// `defer`: see [`super::Command`]; clap builds every nested subcommand enum for
/// every command line, so only deferring the arguments keeps short commands short.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// List dead jobs with the reason they died and their last output line
    List,
    /// Put dead jobs back to pending with attempts reset to 0 (history is kept)
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Ids (or unique prefixes) of dead jobs (or --all for every dead job)
    #[arg(conflicts_with = "all")]
    ids: Vec<String>,

    /// Retry every dead job
    #[arg(long)]
    all: bool,
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::List => list(ctx),
        Command::Retry(args) => retry(ctx, args),
    }
}

/// Dead jobs with why they died (`last_error`) and the last line they printed,
/// which together usually tell what to fix before `dlq retry`.
fn list(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    let dead = store.list(Some(JobState::Dead), None)?;
    let mut last_lines = Vec::with_capacity(dead.len());
    for job in &dead {
        // `list` leaves the output tail out; one job at a time reads it.
        let tail = store.job(&job.id)?.and_then(|j| j.output_tail);
        last_lines.push(tail.as_deref().and_then(last_line).map(str::to_owned));
    }
    let p = &ctx.printer;
    if p.json {
        let values = dead.iter().zip(&last_lines).map(|(job, line)| {
            let mut value = job_json(job);
            if let Some(object) = value.as_object_mut() {
                object.insert("last_output_line".into(), json!(line));
            }
            value
        });
        return printed(p.json(&Value::Array(values.collect())));
    }
    if dead.is_empty() {
        return printed(p.line("No dead jobs."));
    }
    let rows: Vec<Vec<String>> = dead
        .iter()
        .zip(&last_lines)
        .map(|(job, line)| {
            vec![
                one_line(&job.id),
                format!("{}/{}", job.attempts, job.max_retries + 1),
                one_line(&job.command),
                one_line(job.last_error.as_deref().unwrap_or("-")),
                one_line(line.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    printed(p.table(
        &["ID", "ATTEMPTS", "COMMAND", "REASON", "LAST OUTPUT"],
        &rows,
    ))
}

/// The last non-blank line of `text`.
fn last_line(text: &str) -> Option<&str> {
    text.lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.is_empty())
}

fn retry(ctx: &Context, args: RetryArgs) -> Result<(), Failure> {
    if args.ids.is_empty() && !args.all {
        return Err(Failure::usage(
            "no dead jobs named; give their ids (queuectl dlq retry ID...) or retry every \
             dead job with --all",
        ));
    }
    if args.ids.iter().any(|id| id.is_empty()) {
        return Err(InputError::Invalid("an empty job id was given".into()).into());
    }
    let mut store = ctx.open()?;
    let ids = super::ids::resolve_all(store.as_mut(), &args.ids)?;
    let ids = if args.all { None } else { Some(ids.as_slice()) };
    let retried = store.retry_dead(ids)?;
    let p = &ctx.printer;
    if p.json {
        let ids: Vec<Value> = retried.iter().map(|id| json!(id)).collect();
        return printed(p.json(&Value::Array(ids)));
    }
    if retried.is_empty() {
        return printed(p.line("No dead jobs to retry."));
    }
    for id in &retried {
        printed(p.line(&format!("Retried: {id}")))?;
    }
    Ok(())
}
