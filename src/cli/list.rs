//! `queuectl list`: jobs as a table that fits the terminal, or JSON.
//!
//! On a terminal a plain `list` prints a page, the last [`PAGE`] jobs of the order
//! (the newest, newest last, nearest the prompt), and a line saying how many more
//! there are and how to see them; piped, redirected or with `--json` it prints
//! everything, since a script wants all of it. `--all`, `--limit N` (the first N)
//! and `--last N` (the last N) say exactly which jobs. A page reads only its own
//! rows and the per-state counts, so it costs the same on 100 or 100,000 jobs.

use serde_json::Value;

use super::jobs::parse_state;
use super::output::{job_json, one_line};
use super::{Context, printed};
use crate::error::Failure;
use crate::job::{Job, JobState};
use crate::store::{JobListing, JobOrder};

/// How many jobs a plain `list` shows on a terminal.
pub const PAGE: usize = 50;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state: pending, processing, completed, failed, dead or
    /// cancelled
    #[arg(long)]
    state: Option<String>,

    /// The first N jobs of the order
    #[arg(long, value_name = "N", conflicts_with_all = ["last", "all"])]
    limit: Option<usize>,

    /// The last N jobs of the order (by default the newest N, newest last)
    #[arg(long, value_name = "N", conflicts_with = "all")]
    last: Option<usize>,

    /// Every job, also on a terminal (where a plain `list` shows the newest 50)
    #[arg(long)]
    all: bool,

    /// Order, ascending (the last line is the newest, latest update or highest
    /// priority) [default: created; waiting jobs listed by --state: run order]
    #[arg(long, value_enum, value_name = "KEY")]
    sort: Option<SortKey>,
}

/// `--sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SortKey {
    /// Creation order
    Created,
    /// When the job last changed
    Updated,
    /// Priority, then creation
    Priority,
    /// Lifecycle order (pending, processing, completed, failed, dead, cancelled)
    State,
}

pub fn list(ctx: &Context, args: ListArgs) -> Result<(), Failure> {
    let state = parse_state(args.state.as_deref())?;
    let order = match args.sort {
        None => JobOrder::Natural,
        Some(SortKey::Created) => JobOrder::Created,
        Some(SortKey::Updated) => JobOrder::Updated,
        Some(SortKey::Priority) => JobOrder::Priority,
        Some(SortKey::State) => JobOrder::State,
    };
    let p = &ctx.printer;
    let page =
        p.is_terminal() && !p.json && !args.all && args.limit.is_none() && args.last.is_none();
    let mut listing = JobListing {
        state,
        order,
        limit: args.limit.or(args.last),
        from_end: args.last.is_some(),
        ..JobListing::default()
    };
    if page {
        listing.limit = Some(PAGE);
        listing.from_end = true;
    }
    let mut store = ctx.open_to_read()?;
    let jobs = store.list_jobs(&listing)?;
    print_jobs(ctx, &jobs)?;
    if page && jobs.len() == PAGE {
        let counts = store.counts()?;
        let total = match state {
            Some(state) => counts.get(state),
            None => JobState::ALL.iter().map(|s| counts.get(*s)).sum(),
        };
        let more = u64::try_from(total)
            .unwrap_or(0)
            .saturating_sub(PAGE as u64);
        if more > 0 {
            let jobs = if more == 1 { "job" } else { "jobs" };
            printed(p.line(&format!(
                "… {} more {jobs} not shown; see them with --all, --last N or --json",
                thousands(more)
            )))?;
        }
    }
    Ok(())
}

/// `99950` as `99,950`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints jobs as a JSON array or a table. Columns that would say nothing for every
/// job listed (queue `default`, priority 0, nothing waiting, no error) are left out,
/// so the command gets the room.
pub(super) fn print_jobs(ctx: &Context, jobs: &[Job]) -> Result<(), Failure> {
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(jobs.iter().map(job_json).collect())));
    }
    if jobs.is_empty() {
        return printed(p.line("No jobs."));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let show_queue = jobs
        .iter()
        .any(|j| j.queue != crate::job::options::DEFAULT_QUEUE);
    let show_priority = jobs.iter().any(|j| j.priority != 0);
    let show_runs = jobs.iter().any(|j| waiting(j.state));
    let show_error = jobs.iter().any(|j| j.last_error.is_some());
    let mut header = vec!["ID", "STATE", "ATTEMPTS"];
    let optional = [
        (show_queue, "QUEUE"),
        (show_priority, "PRIORITY"),
        (show_runs, "RUNS"),
    ];
    header.extend(optional.iter().filter(|(on, _)| *on).map(|(_, h)| *h));
    header.extend(["UPDATED", "COMMAND"]);
    if show_error {
        header.push("LAST ERROR");
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let mut row = vec![one_line(&j.id), p.state(j.state), attempts_cell(j)];
            if show_queue {
                row.push(one_line(&j.queue));
            }
            if show_priority {
                row.push(j.priority.to_string());
            }
            if show_runs {
                row.push(runs(ctx, j, now));
            }
            row.push(p.time(j.updated_at));
            row.push(one_line(&j.command));
            if show_error {
                row.push(one_line(j.last_error.as_deref().unwrap_or("")));
            }
            row
        })
        .collect();
    printed(p.table(&header, &rows))
}

/// The ATTEMPTS cell: `attempt N running` while an attempt runs (the attempt the
/// worker's log calls N), else finished attempts out of those allowed (`1/4`).
pub(super) fn attempts_cell(job: &Job) -> String {
    if job.state == JobState::Processing {
        format!("attempt {} running", job.attempts + 1)
    } else {
        format!("{}/{}", job.attempts, job.max_retries + 1)
    }
}

fn waiting(state: JobState) -> bool {
    matches!(state, JobState::Pending | JobState::Failed)
}

/// When a waiting job will run: its time when that is still ahead, `after N
/// job(s)` while it waits for others, `now` when it is due, `-` for other states.
fn runs(ctx: &Context, job: &Job, now: i64) -> String {
    if !waiting(job.state) {
        return "-".into();
    }
    if job.blocked_by > 0 {
        return format!("after {} job(s)", job.blocked_by);
    }
    if job.next_run_at > now {
        return ctx.printer.time(job.next_run_at);
    }
    "now".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(99_950), "99,950");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
