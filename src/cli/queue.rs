//! `queuectl queue`: the queues jobs are put in (`enqueue --queue`), their counts,
//! and the settings every worker obeys: pause and a concurrency limit.

use serde_json::Value;

use super::output::{one_line, queue_json};
use super::{Context, printed};
use crate::error::{Failure, InputError};
use crate::job::JobState;
use crate::job::options::validate_queue;
use crate::store::{QueueChange, QueueRow};

/// `defer`: see [`super::Command`].
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Per queue: jobs by state, how many run now, paused or not, concurrency limit
    List,
    /// Stop starting jobs from a queue (running jobs are not touched)
    Pause {
        /// The queue
        name: String,
    },
    /// Start jobs from a paused queue again
    Resume {
        /// The queue
        name: String,
    },
    /// At most N of the queue's jobs run at once, across all workers and machines
    /// (`none`: no limit)
    Concurrency {
        /// The queue
        name: String,
        /// A number of jobs (1 or more), or `none`
        #[arg(value_name = "N|none")]
        limit: String,
    },
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::List => list(ctx),
        Command::Pause { name } => change(ctx, &name, QueueChange::Pause),
        Command::Resume { name } => change(ctx, &name, QueueChange::Resume),
        Command::Concurrency { name, limit } => {
            let limit = parse_limit(&limit)?;
            change(ctx, &name, QueueChange::Concurrency(limit))
        }
    }
}

/// `N` (1 or more) or `none`.
fn parse_limit(text: &str) -> Result<Option<i64>, InputError> {
    if text == "none" {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
        _ => Err(InputError::Invalid(format!(
            "bad concurrency limit '{}'; give a number of jobs from 1 to 1000000, or none",
            text.escape_debug()
        ))),
    }
}

fn change(ctx: &Context, name: &str, change: QueueChange) -> Result<(), Failure> {
    let name = validate_queue(name)?;
    let mut store = ctx.open()?;
    store.set_queue(&name, change)?;
    let said = match change {
        QueueChange::Pause => format!("Paused queue {name}: no new job starts from it"),
        QueueChange::Resume => format!("Resumed queue {name}"),
        QueueChange::Concurrency(Some(n)) => {
            format!("Queue {name}: at most {n} job(s) run at once")
        }
        QueueChange::Concurrency(None) => format!("Queue {name}: no concurrency limit"),
    };
    if ctx.printer.json {
        let row = store.queues()?.into_iter().find(|q| q.name == name);
        let row = row.unwrap_or(QueueRow {
            name,
            ..QueueRow::default()
        });
        return printed(ctx.printer.json(&queue_json(&row)));
    }
    printed(ctx.printer.line(&said))
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    let queues = store.queues()?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(queues.iter().map(queue_json).collect())));
    }
    if queues.is_empty() {
        return printed(p.line("No queues: no job was enqueued and no queue has settings."));
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let mut row = vec![one_line(&q.name)];
            row.extend(JobState::ALL.iter().map(|s| q.counts.get(*s).to_string()));
            row.push(if q.paused { "paused" } else { "running" }.to_owned());
            row.push(q.concurrency.map_or("-".to_owned(), |n| n.to_string()));
            row
        })
        .collect();
    printed(p.table(
        &[
            "QUEUE",
            "PENDING",
            "RUNNING",
            "COMPLETED",
            "FAILED",
            "DEAD",
            "CANCELLED",
            "STATUS",
            "LIMIT",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_positive_numbers_or_none() {
        assert_eq!(parse_limit("none").ok(), Some(None));
        assert_eq!(parse_limit("4").ok(), Some(Some(4)));
        for bad in ["0", "-1", "many", "", "1.5"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
