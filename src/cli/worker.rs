//! `queuectl worker start | stop | list`.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::output::{age, one_line, worker_json};
use super::{Context, printed};
use crate::error::Failure;
use crate::job::options::validate_queue;
use crate::store::{OpenFor, StopRequest, WorkerRow};
use crate::worker::{self, Executor, Options, platform};

/// `defer`: see [`super::Command`]; clap builds every nested subcommand enum for
/// every command line, so only deferring the arguments keeps short commands short.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run workers in the foreground until stopped (Ctrl-C, SIGTERM or `worker stop`)
    Start {
        /// How many jobs to run at once
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u16).range(1..=1024))]
        count: u16,
        /// Exit once nothing runs or waits for a retry and no pending job is ready for
        /// this worker (jobs waiting for a time, for other jobs, or in paused or other
        /// queues are left for later)
        #[arg(long)]
        burst: bool,
        /// Serve only these queues, comma-separated (default: all)
        #[arg(long, value_name = "NAMES", value_delimiter = ',')]
        queue: Vec<String>,
    },
    /// Ask running workers to finish their current job and exit; waits for them
    Stop {
        /// Kill running jobs instead (they go back to pending, no attempt used)
        #[arg(long)]
        force: bool,
        /// Only the workers on this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// How long to wait for the workers to exit, in seconds
        #[arg(long, default_value_t = 20.0, value_name = "SECS")]
        timeout: f64,
    },
    /// List live workers (with --all, also stopped and lost ones)
    List {
        /// Also list stopped and lost workers
        #[arg(long)]
        all: bool,
    },
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::Start {
            count,
            burst,
            queue,
        } => start(ctx, usize::from(count), burst, queue),
        Command::Stop {
            force,
            host,
            timeout,
        } => stop(ctx, force, host.as_deref(), timeout),
        Command::List { all } => list(ctx, all),
    }
}

fn start(ctx: &Context, count: usize, burst: bool, queues: Vec<String>) -> Result<(), Failure> {
    let queues = if queues.is_empty() {
        None
    } else {
        let valid = queues.iter().map(|q| validate_queue(q.trim()));
        Some(valid.collect::<Result<Vec<_>, _>>()?)
    };
    let store = ctx.open_for(OpenFor::Worker)?;
    let options = Options {
        queues,
        count,
        burst,
        executor: Executor::Shell,
        log_jobs: true,
        handle_signals: true,
        timings: false,
        on_spawn: None,
    };
    worker::run(store, &options)?;
    Ok(())
}

fn stop(ctx: &Context, force: bool, host: Option<&str>, timeout: f64) -> Result<(), Failure> {
    if !timeout.is_finite() || timeout < 0.0 {
        return Err(Failure::usage("--timeout must be a number of seconds >= 0"));
    }
    let mut store = ctx.open()?;
    let request = if force {
        StopRequest::Force
    } else {
        StopRequest::Graceful
    };
    let asked: BTreeSet<String> = store.request_stop(host, request)?.into_iter().collect();
    let p = &ctx.printer;
    if asked.is_empty() {
        return printed(p.line("No workers running."));
    }
    eprintln!(
        "Asked {} worker(s) to stop; waiting for them to exit...",
        asked.len()
    );
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let here = platform::host_name();
    loop {
        let remaining: Vec<WorkerRow> = store
            .workers(false)?
            .into_iter()
            .filter(|w| asked.contains(&w.info.id))
            .filter(|w| w.info.host != here || platform::is_alive(w.info.pid, w.info.pid_start))
            .collect();
        if remaining.is_empty() {
            return printed(p.line(&format!("Stopped {} worker(s).", asked.len())));
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = remaining
                .iter()
                .map(|w| match &w.job {
                    Some(job) => format!("{} (running {job})", w.info.id),
                    None => w.info.id.clone(),
                })
                .collect();
            return Err(Failure::runtime(format!(
                "still stopping after {timeout}s: {}; they exit after their current job (use --force to kill it)",
                names.join(", ")
            )));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn list(ctx: &Context, all: bool) -> Result<(), Failure> {
    let mut store = ctx.open()?;
    let workers = store.workers(all)?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(workers.iter().map(worker_json).collect())));
    }
    if workers.is_empty() {
        return printed(p.line("No workers."));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                one_line(&w.info.id),
                one_line(&w.info.host),
                w.info.pid.to_string(),
                p.worker_state(w.state),
                w.job.as_deref().map_or_else(|| "-".into(), one_line),
                p.time(w.started_at),
                format!("{} ago", age(now - w.heartbeat_at)),
            ]
        })
        .collect();
    printed(p.table(
        &["ID", "HOST", "PID", "STATE", "JOB", "STARTED", "HEARTBEAT"],
        &rows,
    ))
}
