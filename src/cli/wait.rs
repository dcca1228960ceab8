//! `queuectl wait`: blocks until jobs are finished, for scripts (`enqueue ...;
//! queuectl wait && next-step`) and for people watching a batch.
//!
//! Exit codes: 0 when every job completed, 1 when any ended dead or cancelled, 124
//! (as `timeout(1)`) when `--timeout` passed first, 130 on Ctrl-C. It wakes on the
//! store's change signal ([`Watch`]) and looks again only at jobs still unfinished.
//! On a terminal (stderr) it draws a progress bar; otherwise it prints nothing
//! until the end, so its output is only the result.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::output::job_json;
use super::watch::{INTERRUPTED, Watch};
use super::{Context, printed};
use crate::duration;
use crate::error::{Failure, InputError};
use crate::job::{Job, JobState};
use crate::store::{IfMissing, Store};

/// `wait`'s exit code when `--timeout` passes first, as `timeout(1)` uses.
pub const TIMED_OUT: i32 = 124;

/// Above this many jobs, what is still unfinished is read with one query per
/// unfinished state rather than one per job.
const PER_JOB_LOOKUPS: usize = 64;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl wait                   every job unfinished now\n  \
    queuectl wait JOB1 JOB2 --timeout 10m")]
pub struct Args {
    /// Ids (or unique prefixes) of the jobs to wait for (default: every job
    /// unfinished when `wait` starts)
    ids: Vec<String>,

    /// Give up after DURATION (30s, 5m, 2h) and exit 124
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let timeout = args
        .timeout
        .as_deref()
        .map(|text| {
            duration::parse(text).ok_or_else(|| {
                InputError::Invalid(format!("--timeout: {}", duration::expected(text)))
            })
        })
        .transpose()?;
    if args.ids.iter().any(|id| id.is_empty()) {
        return Err(InputError::Invalid("an empty job id was given".into()).into());
    }
    let mut store = ctx.open_to_watch(true, IfMissing::Refuse)?;
    let ids = if args.ids.is_empty() {
        unfinished_ids(store.as_mut())?
    } else {
        let ids = super::ids::resolve_all(store.as_mut(), &args.ids)?;
        for id in &ids {
            super::jobs::find(store.as_mut(), id)?;
        }
        ids
    };
    let code = wait_for(ctx, store.as_mut(), ids, timeout)?;
    super::logs::exit_with(code)
}

/// Waits until every job in `ids` is finished (or `timeout` passes), then prints
/// the result; returns the exit code. Shared with `enqueue --file --wait`.
pub(super) fn wait_for(
    ctx: &Context,
    store: &mut dyn Store,
    ids: Vec<String>,
    timeout: Option<Duration>,
) -> Result<i32, Failure> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut watch = Watch::new(store);
    let bar = progress_bar(ctx, ids.len());
    let mut pending: Vec<String> = dedup(ids);
    let total = pending.len();
    let mut finished: BTreeMap<String, Job> = BTreeMap::new();
    loop {
        let newly = newly_finished(store, &pending)?;
        for job in newly {
            pending.retain(|id| *id != job.id);
            finished.insert(job.id.clone(), job);
        }
        if let Some(bar) = &bar {
            bar.set_position(finished.len() as u64);
            bar.set_message(progress_message(&finished, total, started.elapsed()));
        }
        if pending.is_empty() {
            break;
        }
        if watch.interrupted() {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Ok(INTERRUPTED);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            let waited = timeout.map(duration::human).unwrap_or_default();
            eprintln!(
                "error: timed out after {waited}: {} of {total} jobs still unfinished ({})",
                pending.len(),
                preview(&pending)
            );
            return Ok(TIMED_OUT);
        }
        watch.wait(left);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let jobs: Vec<&Job> = finished.values().collect();
    let unsuccessful: Vec<&&Job> = jobs
        .iter()
        .filter(|j| j.state != JobState::Completed)
        .collect();
    let p = &ctx.printer;
    if p.json {
        let mut ordered: Vec<&Job> = jobs.clone();
        ordered.sort_by_key(|j| (j.created_at, j.id.clone()));
        let values: Vec<Value> = ordered.into_iter().map(job_json).collect();
        printed(p.json(&Value::Array(values)))?;
    } else {
        let completed = total - unsuccessful.len();
        let count = |state| unsuccessful.iter().filter(|j| j.state == state).count();
        printed(p.line(&format!(
            "Finished: {total} job{} ({completed} completed, {} dead, {} cancelled)",
            if total == 1 { "" } else { "s" },
            count(JobState::Dead),
            count(JobState::Cancelled)
        )))?;
        for job in &unsuccessful {
            let why = job.last_error.as_deref().unwrap_or("");
            printed(p.line(&super::output::visible(&format!(
                "{} {}: {why}",
                job.state, job.id
            ))))?;
        }
    }
    Ok(if unsuccessful.is_empty() { 0 } else { 1 })
}

/// Waits without printing until job `id` is finished; returns the exit code that
/// stands for it ([`super::follow::final_code`]), or [`INTERRUPTED`] on Ctrl-C. For
/// `enqueue --wait --json`, which prints the finished job instead of its output.
pub(super) fn wait_for_quietly(store: &mut dyn Store, id: &str) -> Result<i32, Failure> {
    let mut watch = Watch::new(store);
    loop {
        let job = super::jobs::find(store, id)?;
        if !job.state.is_unfinished() {
            return Ok(super::follow::final_code(&job));
        }
        if watch.interrupted() {
            return Ok(INTERRUPTED);
        }
        watch.wait(None);
    }
}

/// Every job unfinished now, in creation order.
fn unfinished_ids(store: &mut dyn Store) -> Result<Vec<String>, Failure> {
    let mut jobs = Vec::new();
    for state in [JobState::Pending, JobState::Processing, JobState::Failed] {
        jobs.extend(store.list(Some(state), None)?);
    }
    // A stable sort: jobs of one state created in the same millisecond keep the
    // store's order (generated ids are random, so they cannot break ties).
    jobs.sort_by_key(|j| j.created_at);
    Ok(jobs.into_iter().map(|j| j.id).collect())
}

/// The jobs among `ids` that are finished now. A job deleted meanwhile (`clean` of
/// a job finished in between) cannot be told apart from an unknown id: an error.
fn newly_finished(store: &mut dyn Store, ids: &[String]) -> Result<Vec<Job>, Failure> {
    if ids.len() > PER_JOB_LOOKUPS {
        let unfinished: std::collections::HashSet<String> =
            unfinished_ids(store)?.into_iter().collect();
        let candidates: Vec<String> = ids
            .iter()
            .filter(|id| !unfinished.contains(*id))
            .cloned()
            .collect();
        return finished_among(store, &candidates);
    }
    finished_among(store, ids)
}

fn finished_among(store: &mut dyn Store, ids: &[String]) -> Result<Vec<Job>, Failure> {
    let mut done = Vec::new();
    for id in ids {
        let job = store.job(id)?.ok_or_else(|| {
            Failure::runtime(format!("job '{id}' was deleted while waiting for it"))
        })?;
        if !job.state.is_unfinished() {
            done.push(job);
        }
    }
    Ok(done)
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// A few of `ids` for a message, e.g. `a, b, c and 7 more`.
fn preview(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
    let mut text = shown.join(", ");
    if ids.len() > 3 {
        text.push_str(&format!(" and {} more", ids.len() - 3));
    }
    super::output::visible(&text).into_owned()
}

/// The bar's text after `done`: how many ended dead and cancelled, the rate jobs
/// have finished at since `wait` started, and the time left at that rate. Ours,
/// not indicatif's `{per_sec}`/`{eta}`: those are fitted to the bar's recent steps,
/// which for a handful of jobs gives rates like `7,467.5102/s` and `ETA 0s` before
/// anything finished.
fn progress_message(finished: &BTreeMap<String, Job>, total: usize, elapsed: Duration) -> String {
    let count = |state| finished.values().filter(|j| j.state == state).count();
    let done = finished.len();
    let mut text = format!(
        "{} dead, {} cancelled",
        count(JobState::Dead),
        count(JobState::Cancelled)
    );
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs < 0.001 {
        text.push_str(", ETA unknown");
        return text;
    }
    let rate = done as f64 / secs;
    if rate >= 10.0 {
        text.push_str(&format!(", {rate:.0} jobs/s"));
    } else {
        text.push_str(&format!(", {rate:.1} jobs/s"));
    }
    let left = Duration::from_secs_f64((total - done) as f64 / rate);
    text.push_str(&format!(", ETA {}", duration::human(left)));
    text
}

/// The progress bar, only when stderr is a terminal (and not for `--json`, whose
/// output is for programs).
fn progress_bar(ctx: &Context, total: usize) -> Option<ProgressBar> {
    if ctx.printer.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} done, {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(progress_message(&BTreeMap::new(), total, Duration::ZERO));
    bar.enable_steady_tick(Duration::from_millis(500));
    Some(bar)
}
