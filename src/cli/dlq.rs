//! `queuectl dlq`: the dead letter queue, where jobs land when their attempts (or
//! interruptions) are used up.

use serde_json::{Value, json};

use super::{Context, jobs, printed};
use crate::error::{Failure, InputError};
use crate::job::JobState;

/// `defer`: see [`super::Command`]; clap builds every nested subcommand enum for
/// every command line, so only deferring the arguments keeps short commands short.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// List dead jobs with their last error
    List,
    /// Put dead jobs back to pending with attempts reset to 0 (history is kept)
    Retry(RetryArgs),
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Ids of dead jobs
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,

    /// Retry every dead job
    #[arg(long)]
    all: bool,
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::List => {
            let mut store = ctx.open()?;
            let dead = store.list(Some(JobState::Dead), None)?;
            jobs::print_jobs(ctx, &dead)
        }
        Command::Retry(args) => retry(ctx, args),
    }
}

fn retry(ctx: &Context, args: RetryArgs) -> Result<(), Failure> {
    if args.ids.iter().any(|id| id.is_empty()) {
        return Err(InputError::Invalid("an empty job id was given".into()).into());
    }
    let mut store = ctx.open()?;
    let ids = if args.all {
        None
    } else {
        Some(args.ids.as_slice())
    };
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
