//! `queuectl cron`: recurring jobs. `add` checks everything (name, expression, time
//! zone, every job option) before opening the store, so bad input changes nothing;
//! the running workers enqueue the runs (`worker::supervisor::cron_tick`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::output::{Printer, age, one_line, opt_timestamp, timestamp};
use super::{Context, printed};
use crate::cron::{self, CronJob, CronSchedule};
use crate::error::{Failure, InputError};
use crate::job::options::parse_env_pair;
use crate::store::{CronEntry, NewCronEntry};

/// `defer`: see [`super::Command`].
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run a job on a cron schedule: NAME 'CRON' [options] -- COMMAND
    Add(Box<AddArgs>),
    /// List entries with their next and last run
    List,
    /// Delete an entry (the jobs it enqueued stay)
    Remove(NameArg),
    /// Stop enqueueing an entry's runs until `cron resume`
    Pause(NameArg),
    /// Enqueue an entry's runs again, from its next tick (missed ticks are skipped)
    Resume(NameArg),
}

#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// The entry's name
    name: String,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl cron add nightly '0 3 * * *' -- ./backup.sh\n  \
    queuectl cron add report '30 9 * * 1-5' --tz Europe/Paris --queue reports --command 'make report'\n  \
    queuectl cron add ping @hourly --priority 5 -- curl -fsS https://example.org/health\n\n\
    CRON is five fields (minute hour day-of-month month day-of-week) or one of @yearly,\n\
    @annually, @monthly, @weekly, @daily, @midnight, @hourly. Running workers enqueue one\n\
    job per tick, keyed NAME@TICK; after downtime, one catch-up run, not one per missed tick.")]
pub struct AddArgs {
    /// The entry's name: 1 to 64 of A-Z a-z 0-9 _ . -
    name: String,

    /// When to run: five cron fields, e.g. '0 9 * * 1-5', or @daily, @hourly, ...
    #[arg(value_name = "CRON")]
    schedule: String,

    /// The IANA time zone the schedule is read in (default: this machine's)
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,

    /// The shell command to run
    #[arg(long)]
    command: Option<String>,

    /// Retries after the first run (default: the max-retries setting)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_retries: Option<i64>,

    /// Kill an attempt still running after DURATION (30s, 5m, 2h)
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,

    /// Higher runs first: an integer from -1000 to 1000 (default 0)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i64>,

    /// The queue each run goes to (default: default)
    #[arg(long, value_name = "NAME")]
    queue: Option<String>,

    /// Set an environment variable for the command (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// Run the command in DIR (default: the current directory)
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,

    /// The command, after --: one word is a shell command line ('a && b'); several
    /// are run as given, each word shell-quoted (as `enqueue --` does)
    #[arg(last = true, value_name = "COMMAND")]
    words: Vec<String>,
}

pub fn run(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add(args) => add(ctx, *args),
        Command::List => list(ctx),
        Command::Remove(arg) => remove(ctx, &arg.name),
        Command::Pause(arg) => set_paused(ctx, &arg.name, true),
        Command::Resume(arg) => set_paused(ctx, &arg.name, false),
    }
}

fn add(ctx: &Context, args: AddArgs) -> Result<(), Failure> {
    let name = cron::validate_name(&args.name)?;
    let zone = match &args.tz {
        Some(zone) => zone.clone(),
        None => cron::local_zone_name()?,
    };
    let schedule = CronSchedule::parse(&args.schedule, &zone, cron::seconds_field_from_env())?;
    // An expression that never matches (`0 0 30 2 *`) is refused now, not at a tick.
    schedule.next_after(jiff::Timestamp::now().as_millisecond())?;
    let job = cron_job(args)?.to_json()?;
    let mut store = ctx.open()?;
    let added = store.cron_add(&NewCronEntry {
        name: name.clone(),
        schedule,
        job,
    })?;
    let Some(entry) = added else {
        return Err(Failure::usage(format!(
            "a cron entry named '{name}' already exists; choose another name, or \
             `queuectl cron remove {name}` first"
        )));
    };
    if ctx.printer.json {
        return printed(ctx.printer.json(&entry_json(&entry)));
    }
    printed(ctx.printer.line(&format!(
        "Added: {name}, next run {}",
        next_run_text(&ctx.printer, &entry)
    )))
}

/// The job every run is enqueued from, from the command line.
fn cron_job(args: AddArgs) -> Result<CronJob, Failure> {
    let words = crate::job::command_from_words(&args.words)?;
    let command = match (args.command, words) {
        (Some(command), None) | (None, Some(command)) => command,
        (None, None) => {
            return Err(Failure::usage(
                "no command to run; give it after -- (cron add NAME 'CRON' -- make backup) \
                 or with --command '...'",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give the command once: with --command or after --, not both",
            ));
        }
    };
    let env = if args.env.is_empty() {
        None
    } else {
        let pairs = args.env.iter().map(|pair| parse_env_pair(pair));
        Some(pairs.collect::<Result<BTreeMap<_, _>, InputError>>()?)
    };
    let cwd = match args.cwd {
        Some(dir) => dir,
        None => std::env::current_dir()
            .map_err(|e| Failure::runtime(format!("cannot read the current directory: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    Ok(CronJob {
        command,
        max_retries: args.max_retries,
        timeout: args.timeout,
        priority: args.priority,
        queue: args.queue,
        env,
        cwd,
    })
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let entries = ctx.open_to_read()?.cron_list()?;
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&Value::Array(entries.iter().map(entry_json).collect())));
    }
    if entries.is_empty() {
        return printed(p.line("No cron entries."));
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                one_line(&e.name),
                one_line(&e.schedule),
                one_line(&e.tz),
                next_run_text(p, e),
                e.last_run_at
                    .map_or_else(|| "-".to_owned(), |ms| p.time(ms)),
                one_line(&command_of(e)),
            ]
        })
        .collect();
    printed(p.table(
        &["NAME", "SCHEDULE", "TZ", "NEXT RUN", "LAST RUN", "COMMAND"],
        &rows,
    ))
}

fn remove(ctx: &Context, name: &str) -> Result<(), Failure> {
    let name = cron::validate_name(name)?;
    if !ctx.open()?.cron_remove(&name)? {
        return Err(unknown(&name));
    }
    if ctx.printer.json {
        return printed(ctx.printer.json(&json!({"name": name, "removed": true})));
    }
    printed(ctx.printer.line(&format!("Removed: {name}")))
}

fn set_paused(ctx: &Context, name: &str, paused: bool) -> Result<(), Failure> {
    let name = cron::validate_name(name)?;
    let entry = ctx
        .open()?
        .cron_set_paused(&name, paused)?
        .ok_or_else(|| unknown(&name))?;
    if ctx.printer.json {
        return printed(ctx.printer.json(&entry_json(&entry)));
    }
    let line = if paused {
        format!("Paused: {name}")
    } else {
        format!(
            "Resumed: {name}, next run {}",
            next_run_text(&ctx.printer, &entry)
        )
    };
    printed(ctx.printer.line(&line))
}

fn unknown(name: &str) -> Failure {
    Failure::runtime(format!(
        "no cron entry named '{name}'; `queuectl cron list` shows them"
    ))
}

/// The JSON form of an entry: times RFC 3339 UTC, the job as the object it is.
fn entry_json(entry: &CronEntry) -> Value {
    let job: Value = serde_json::from_str(&entry.job).unwrap_or(Value::String(entry.job.clone()));
    json!({
        "name": entry.name,
        "schedule": entry.schedule,
        "tz": entry.tz,
        "paused": entry.paused,
        "next_run_at": timestamp(entry.next_run_at),
        "last_run_at": opt_timestamp(entry.last_run_at),
        "created_at": timestamp(entry.created_at),
        "job": job,
    })
}

/// When the entry runs next, for people: the time and how far off it is.
fn next_run_text(p: &Printer, entry: &CronEntry) -> String {
    if entry.paused {
        return "paused".to_owned();
    }
    let wait = entry
        .next_run_at
        .saturating_sub(jiff::Timestamp::now().as_millisecond());
    if wait <= 0 {
        return format!("{} (due)", p.time(entry.next_run_at));
    }
    format!("{} (in {})", p.time(entry.next_run_at), age(wait))
}

/// The command of an entry's job, from its stored JSON.
fn command_of(entry: &CronEntry) -> String {
    serde_json::from_str::<Value>(&entry.job)
        .ok()
        .and_then(|job| {
            job.get("command")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
