//! `queuectl worker start | stop | list`.
//!
//! `worker start` runs workers in the foreground; with `--detach` it starts them in
//! a session of their own and returns once they run (see [`crate::worker::detach`]).
//! With `--json`, `start` and `stop` print JSON lines of events on stdout
//! ([`super::worker_events`]); the human log stays on stderr.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::output::{self, age, one_line, worker_json};
use super::{Context, printed, worker_events};
use crate::error::Failure;
use crate::job::options::validate_queue;
use crate::store::{self, IfMissing, OpenFor, StopRequest, WorkerRow};
use crate::worker::detach::{self, DetachError};
use crate::worker::notice::{Notice, NoticeSink};
use crate::worker::{self, Executor, Options, metrics_server, platform};

/// `defer`: see [`super::Command`]; clap builds every nested subcommand enum for
/// every command line, so only deferring the arguments keeps short commands short.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run workers until stopped (Ctrl-C, SIGTERM, SIGHUP or `worker stop`)
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
        /// Run in the background, in a session of its own (closing the terminal does
        /// not stop it): prints the pid once the workers run, logs to worker.log in
        /// the store's directory (PostgreSQL: in $QUEUECTL_HOME)
        #[arg(long)]
        detach: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (PORT or :PORT binds
        /// 127.0.0.1; give HOST:PORT, e.g. 0.0.0.0:9464, to listen elsewhere)
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Set by --detach for the process it starts: the pipe to say "started" on
        #[arg(long, hide = true, value_name = "FD")]
        ready_fd: Option<i32>,
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
            detach,
            metrics,
            ready_fd,
        } => {
            let queues = valid_queues(queue)?;
            let metrics = metrics
                .as_deref()
                .map(metrics_server::metrics_address)
                .transpose()
                .map_err(Failure::usage)?;
            if detach {
                return start_detached(ctx);
            }
            let start_args = StartArgs {
                count: usize::from(count),
                burst,
                queues,
                metrics,
                ready_fd,
            };
            start(ctx, start_args)
        }
        Command::Stop {
            force,
            host,
            timeout,
        } => stop(ctx, force, host.as_deref(), timeout),
        Command::List { all } => list(ctx, all),
    }
}

/// `--queue a,b` checked before anything starts (`None`: all queues).
fn valid_queues(queues: Vec<String>) -> Result<Option<Vec<String>>, Failure> {
    if queues.is_empty() {
        return Ok(None);
    }
    let valid = queues.iter().map(|q| validate_queue(q.trim()));
    Ok(Some(valid.collect::<Result<Vec<_>, _>>()?))
}

/// `worker start` as checked before anything starts.
struct StartArgs {
    count: usize,
    burst: bool,
    queues: Option<Vec<String>>,
    /// `--metrics`, resolved by [`metrics_server::metrics_address`].
    metrics: Option<String>,
    ready_fd: Option<i32>,
}

fn start(ctx: &Context, args: StartArgs) -> Result<(), Failure> {
    let StartArgs {
        count,
        burst,
        queues,
        metrics,
        ready_fd,
    } = args;
    let ready = ready_fd
        .map(detach::Ready::adopt)
        .transpose()
        .map_err(detach_failure)?;
    let location = ctx.location()?;
    let store = worker::store_retry::open_when_reachable(
        || store::open(&location, OpenFor::Worker, IfMissing::Create),
        || {
            if let Some(ready) = &ready {
                ready.signal();
            }
        },
    )?;
    let round_trips = match metrics {
        Some(addr) => {
            let trips = metrics_server::RoundTrips::default();
            let host = platform::host_name();
            let server = metrics_server::start(ctx.location()?, &addr, host, trips.clone())
                .map_err(Failure::runtime)?;
            crate::log::info(&format!("metrics at http://{}/metrics", server.addr));
            Some(trips)
        }
        None => None,
    };
    // Declared before `options`, so the sinks are dropped first and its drop
    // then waits for the last events to be written.
    let json_lines = ctx.printer.json.then(worker_events::JsonLines::start);
    let json = json_lines.as_ref().map(worker_events::JsonLines::sink);
    let on_notice: Option<NoticeSink> = match (json, ready) {
        (None, None) => None,
        (json, ready) => Some(Arc::new(move |notice: &Notice<'_>| {
            if let Some(json) = &json {
                json(notice);
            }
            if let (Some(ready), Notice::Started { .. }) = (&ready, notice) {
                ready.signal();
            }
        })),
    };
    let options = Options {
        queues,
        count,
        burst,
        executor: Executor::Shell,
        log_jobs: true,
        handle_signals: true,
        timings: false,
        on_spawn: None,
        on_notice,
        round_trips,
    };
    worker::run(store, &options)?;
    drop(options);
    drop(json_lines);
    Ok(())
}

/// `worker start --detach`: starts this same command in the background and prints
/// its pid (stdout: the pid alone, so `pid=$(queuectl worker start --detach)` works;
/// stderr: where it logs).
fn start_detached(ctx: &Context) -> Result<(), Failure> {
    let location = ctx.location()?;
    let log =
        detach::log_path(&location).ok_or_else(|| detach_failure(DetachError::NoLogDirectory))?;
    let args = detach::child_args(std::env::args_os().skip(1));
    let detached = detach::spawn(&args, &log).map_err(detach_failure)?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&json!({
            "pid": detached.pid,
            "log": detached.log.to_string_lossy(),
        })));
    }
    eprintln!(
        "Worker process {} runs in the background, logging to {}; `queuectl worker stop` stops it",
        detached.pid,
        output::visible(&detached.log.to_string_lossy())
    );
    printed(p.line(&detached.pid.to_string()))
}

fn detach_failure(e: DetachError) -> Failure {
    let code = match &e {
        DetachError::NotStarted { code: Some(2), .. } => 2,
        _ => 1,
    };
    Failure {
        message: e.to_string(),
        code,
    }
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
    if p.json {
        worker_events::emit(&worker_events::event(
            "stop_requested",
            json!({"force": force, "host": host, "workers": asked}),
        ));
    }
    if asked.is_empty() {
        if p.json {
            worker_events::emit(&worker_events::event("stopped", json!({"workers": 0})));
            return Ok(());
        }
        return printed(p.line("No workers running."));
    }
    if !p.json {
        eprintln!(
            "Asked {} worker(s) to stop; waiting for them to exit...",
            asked.len()
        );
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let here = platform::host_name();
    let mut running = asked.clone();
    loop {
        let remaining: Vec<WorkerRow> = store
            .workers(false)?
            .into_iter()
            .filter(|w| asked.contains(&w.info.id))
            .filter(|w| w.info.host != here || platform::is_alive(w.info.pid, w.info.pid_start))
            .collect();
        let still: BTreeSet<String> = remaining.iter().map(|w| w.info.id.clone()).collect();
        if p.json {
            for gone in running.difference(&still) {
                worker_events::emit(&worker_events::event(
                    "worker_stopped",
                    json!({"worker": gone}),
                ));
            }
        }
        running = still;
        if remaining.is_empty() {
            if p.json {
                let stopped = json!({"workers": asked.len()});
                worker_events::emit(&worker_events::event("stopped", stopped));
                return Ok(());
            }
            return printed(p.line(&format!("Stopped {} worker(s).", asked.len())));
        }
        if Instant::now() >= deadline {
            if p.json {
                let left: Vec<Value> = remaining
                    .iter()
                    .map(|w| json!({"worker": w.info.id, "job": w.job}))
                    .collect();
                worker_events::emit(&worker_events::event(
                    "timed_out",
                    json!({"remaining": left}),
                ));
            }
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
    let mut store = ctx.open_to_read()?;
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
