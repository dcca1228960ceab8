//! `queuectl bench`: parses the options, runs [`crate::bench`], prints the report.

use serde_json::{Map, Value, json};

use super::{Context, printed};
use crate::bench::{self, Mode, Plan};
use crate::error::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure
    #[arg(long, value_enum, default_value_t = Mode::Noop)]
    mode: Mode,
    /// How many jobs (default: 100000 for noop, 10000 for shell, 200 for latency and
    /// single enqueue calls, 100000 for enqueue --file)
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// How many workers (default: 100 for noop, 2 otherwise)
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: Option<u16>,
    /// Measure inside the --db store even if it holds jobs (to measure a store of
    /// realistic size): the benchmark's workers then claim those jobs too, and
    /// --mode noop marks them completed without running them. Without it, a store in
    /// use gets a scratch store beside it
    #[arg(long)]
    in_place: bool,
    /// The shell command each job runs in --mode shell and latency (e.g. 'echo hello'
    /// to include keeping its output)
    #[arg(long, value_name = "COMMAND", default_value = "true")]
    command: String,
    /// Spread the jobs over N queues (queue-0 .. queue-N-1) instead of one
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    queues: u16,
    /// Give each job a random priority (-1000..=1000) instead of 0
    #[arg(long)]
    random_priorities: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let jobs = args.jobs.unwrap_or(match args.mode {
        Mode::Noop | Mode::Enqueue => 100_000,
        Mode::Shell => 10_000,
        Mode::Latency => 200,
    });
    if jobs == 0 {
        return Err(Failure::usage("--jobs must be at least 1"));
    }
    let workers = args
        .workers
        .map_or(if args.mode == Mode::Noop { 100 } else { 2 }, usize::from);
    let exe = std::env::current_exe()
        .map_err(|e| Failure::runtime(format!("cannot find the queuectl binary: {e}")))?;
    let location = ctx.explicit_location()?;
    if args.in_place && location.is_none() {
        return Err(Failure::usage(
            "--in-place measures inside the store given with --db; add --db PATH|URL",
        ));
    }
    let plan = Plan {
        mode: args.mode,
        jobs,
        workers,
        location,
        in_place: args.in_place,
        exe,
        command: args.command,
        queues: usize::from(args.queues),
        random_priorities: args.random_priorities,
    };
    let (cpu, cores) = bench::hardware();
    let mode = format!("{:?}", args.mode).to_lowercase();
    if !ctx.printer.json {
        eprintln!(
            "queuectl bench --mode {mode}: {jobs} jobs, {workers} workers on {cores} cores ({cpu})..."
        );
    }
    let report = bench::run(&plan)?;
    let p = &ctx.printer;
    if p.json {
        let results: Map<String, Value> = report
            .metrics
            .iter()
            .map(|m| (m.key(), json!(round(m.value))))
            .collect();
        return printed(p.json(&json!({
            "mode": mode,
            "jobs": jobs,
            "workers": workers,
            "command": plan.command,
            "store": report.store,
            "durability": "synchronous=FULL (every commit survives power loss)",
            "hardware": {"cpu": cpu, "cores": cores},
            "results": results,
        })));
    }
    printed(p.line(&format!("mode:     {mode}")))?;
    printed(p.line(&format!("hardware: {cores} cores, {cpu}")))?;
    printed(p.line(&format!("store:    {}", report.store)))?;
    printed(p.line(&format!(
        "settings: {jobs} jobs, {workers} workers, durable commits"
    )))?;
    printed(p.line(""))?;
    let rows: Vec<Vec<String>> = report
        .metrics
        .iter()
        .map(|m| vec![m.name.clone(), format_value(m.value), m.unit.to_owned()])
        .collect();
    printed(p.table(&["METRIC", "VALUE", "UNIT"], &rows))
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
