//! The command line: parses arguments, calls the core, prints results.
//!
//! Every command follows the same pipeline: clap parses [`Cli`], the command's module
//! validates its input *before* opening the store (so bad input never changes it),
//! does its work, and prints either a table or JSON. Errors become a one-line message
//! on stderr and an exit code (see [`crate::error`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Failure;
use crate::store::{self, IfMissing, Location, OpenFor, Store};

mod bench;
mod config;
mod control;
mod cron;
mod dashboard;
mod dlq;
mod enqueue;
mod follow;
mod generate;
mod ids;
mod jobs;
mod list;
pub(crate) mod logs;
mod metrics;
pub mod output;
mod queue;
mod stats;
mod table;
mod transfer;
mod wait;
mod watch;
mod worker;
mod worker_events;

use output::{ColorChoice, Printer};

/// The help heading of the options every command takes, listed once apart from each
/// command's own.
const GLOBAL: &str = "Global options";

/// A crash-safe background job queue for shell commands.
#[derive(Debug, Parser)]
#[command(name = "queuectl", version, about, long_about = None)]
pub struct Cli {
    /// The store: a SQLite file path or a postgres:// URL
    /// [default: $QUEUECTL_HOME/queue.db]
    #[arg(long, global = true, help_heading = GLOBAL, env = "QUEUECTL_DB", value_name = "PATH|URL")]
    db: Option<String>,

    /// PostgreSQL schema holding the queue (default: queuectl, or ?schema= in the URL)
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "NAME")]
    schema: Option<String>,

    /// Print JSON on stdout instead of tables
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,

    /// When to colour output
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,

    /// Show times in UTC instead of the local time zone (JSON is always UTC)
    #[arg(long, global = true, help_heading = GLOBAL)]
    utc: bool,

    #[command(subcommand)]
    command: Command,
}

/// `defer`: each subcommand's arguments are described only when that subcommand is
/// run (or its help shown), which halves clap's share of a short command's time.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Command {
    /// Add jobs: a JSON object, --command, --file, --lines, or the words after --
    Enqueue(Box<enqueue::Args>),
    /// Run, stop and list workers
    #[command(subcommand)]
    Worker(worker::Command),
    /// Create the store (and upgrade it) if needed; reading commands never create one
    Init,
    /// Job counts per state, live workers, oldest pending job
    Status,
    /// List jobs
    List(jobs::ListArgs),
    /// Show one job with its attempts and last output
    Show(jobs::ShowArgs),
    /// Print a job's output (-f: follow it live until the job finishes)
    Logs(logs::Args),
    /// Block until jobs are finished (exit 0: all completed, 1: some did not, 124: timeout)
    Wait(wait::Args),
    /// Stop jobs: pending ones at once, running ones killed by their worker
    Cancel(control::CancelArgs),
    /// Put finished jobs back to pending with attempts reset to 0 (history is kept)
    Retry(control::RetryArgs),
    /// Delete finished jobs with their history and output
    Clean(control::CleanArgs),
    /// The dead letter queue: jobs whose attempts are used up
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Queues: counts per queue, pause and resume, concurrency limits
    #[command(subcommand)]
    Queue(queue::Command),
    /// Serve the web dashboard and its JSON API (read-only unless given a token)
    Dashboard(dashboard::Args),
    /// Queue settings shared by every worker
    #[command(subcommand)]
    Config(config::Command),
    /// Per queue and in total: finished, success rate, throughput, durations, backlog
    Stats(stats::Args),
    /// Print the Prometheus text exposition of the queue (jobs, attempts, workers)
    Metrics,
    /// Measure throughput and latency on this machine
    Bench(bench::Args),
    /// Print jobs with their attempts and output as JSON lines (for `import`)
    Export(transfer::ExportArgs),
    /// Add the jobs of an `export` file to this store, all or nothing
    Import(transfer::ImportArgs),
    /// Recurring jobs: run a job on a cron schedule (add, list, remove, pause, resume)
    #[command(subcommand)]
    Cron(cron::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(generate::CompletionsArgs),
    /// Print the manual page (roff), or write one per command with --dir
    Man(generate::ManArgs),
}

/// Runs queuectl with `args`; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            report_parse_error(&e);
            return e.exit_code();
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(failure) => {
            // Messages quote user input (ids, paths, commands): one line, whatever
            // it holds, with control characters shown, never obeyed by the terminal.
            eprintln!("error: {}", output::one_line(&failure.message));
            failure.code
        }
    }
}

/// `Cli::try_parse_from`, minus tearing down clap's description of every command
/// afterwards: freeing hundreds of small allocations took ~5% of an `enqueue` call,
/// and the process exits soon after anyway.
fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = std::mem::ManuallyDrop::new(Cli::command());
    let mut matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// Prints what clap has to say: help and the version as clap renders them, and an
/// argument error as one line (see [`one_line`]).
fn report_parse_error(e: &clap::Error) {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
        }
        _ => eprintln!(
            "error: {}",
            output::one_line(&one_line(&e.render().to_string()))
        ),
    }
}

/// Folds one of clap's argument errors into queuectl's one-line form. clap spreads
/// an error over several lines (the error, indented items, tips, the usage, a
/// pointer to `--help`); scripts and users get one line that keeps clap's wording
/// for the problem and its tips and ends with the help to read, e.g.
/// `unexpected argument '--bogus' found; to pass '--bogus' as a value, use
/// '-- --bogus'; see 'queuectl enqueue --help'`.
fn one_line(rendered: &str) -> String {
    let mut message = String::new();
    let mut help = None;
    for raw in rendered.lines() {
        let line = raw.trim();
        if line.starts_with("For more information") {
            // Not every error shows a usage line to name the command from.
            help.get_or_insert_with(|| "try '--help'".to_owned());
        }
        if line.is_empty() || help.is_some() {
            continue; // blank, or the usage and what follows it
        }
        if let Some(usage) = line.strip_prefix("Usage: ") {
            // "queuectl dlq retry <IDS>..." names the command whose help to read.
            let command: Vec<&str> = usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['[', '<', '-']))
                .collect();
            help = Some(format!("see '{} --help'", command.join(" ")));
            continue;
        }
        let (text, separator) = if let Some(tip) = line.strip_prefix("tip: ") {
            (tip, "; ")
        } else if let Some(values) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            (values, "; ") // "[possible values: a, b]"
        } else if raw.starts_with(char::is_whitespace) {
            (line, ", ") // one of several items listed under the error
        } else {
            (line.strip_prefix("error: ").unwrap_or(line), "; ")
        };
        if message.ends_with(':') {
            message.push(' ');
        } else if !message.is_empty() {
            message.push_str(separator);
        }
        message.push_str(text);
    }
    if let Some(help) = help {
        message.push_str("; ");
        message.push_str(&help);
    }
    message
}

fn run(cli: Cli) -> Result<(), Failure> {
    let printer = Printer::new(cli.json, cli.color, cli.utc);
    let ctx = Context {
        db: cli.db,
        schema: cli.schema,
        printer,
    };
    match cli.command {
        Command::Enqueue(args) => enqueue::run(&ctx, *args),
        Command::Worker(command) => worker::run(&ctx, command),
        Command::Init => jobs::init(&ctx),
        Command::Status => jobs::status(&ctx),
        Command::List(args) => jobs::list(&ctx, args),
        Command::Show(args) => jobs::show(&ctx, args),
        Command::Logs(args) => logs::run(&ctx, args),
        Command::Wait(args) => wait::run(&ctx, args),
        Command::Cancel(args) => control::cancel(&ctx, args),
        Command::Retry(args) => control::retry(&ctx, args),
        Command::Clean(args) => control::clean(&ctx, args),
        Command::Dlq(command) => dlq::run(&ctx, command),
        Command::Queue(command) => queue::run(&ctx, command),
        Command::Dashboard(args) => dashboard::run(&ctx, args),
        Command::Config(command) => config::run(&ctx, command),
        Command::Stats(args) => stats::run(&ctx, args),
        Command::Metrics => metrics::run(&ctx),
        Command::Bench(args) => bench::run(&ctx, args),
        Command::Export(args) => transfer::export(&ctx, args),
        Command::Import(args) => transfer::import(&ctx, args),
        Command::Cron(command) => cron::run(&ctx, command),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
    }
}

/// What every command needs: where the store is and how to print.
pub(crate) struct Context {
    db: Option<String>,
    schema: Option<String>,
    pub printer: Printer,
}

impl Context {
    /// The store named by `--db`, if any (no default).
    pub fn explicit_location(&self) -> Result<Option<Location>, Failure> {
        match &self.db {
            Some(db) => Ok(Some(Location::parse(db, self.schema.as_deref())?)),
            None => Ok(None),
        }
    }

    pub fn location(&self) -> Result<Location, Failure> {
        let text = match &self.db {
            Some(db) => db.clone(),
            None => default_db_path()?.to_string_lossy().into_owned(),
        };
        Ok(Location::parse(&text, self.schema.as_deref())?)
    }

    /// Opens the store for a short command that writes, creating it if missing.
    pub fn open(&self) -> Result<Box<dyn Store>, Failure> {
        self.open_for(OpenFor::Command, IfMissing::Create)
    }

    /// Opens the store for a short command that only reads: a missing store is
    /// reported ([`crate::error::StoreError::Missing`]) and nothing is created.
    pub fn open_to_read(&self) -> Result<Box<dyn Store>, Failure> {
        self.open_for(OpenFor::Command, IfMissing::Refuse)
    }

    /// Opens the store for a command that stays for as long as a job runs (`logs
    /// -f`, `wait`, `enqueue --wait`; `long` false opens it like any short command).
    /// Such a command must share the store as a worker does: a short command that
    /// finds the SQLite file unused holds it alone until it exits, which would lock
    /// out the very workers it waits for. `if_missing` is `Refuse` for the commands
    /// that only read.
    pub fn open_to_watch(
        &self,
        long: bool,
        if_missing: IfMissing,
    ) -> Result<Box<dyn Store>, Failure> {
        let purpose = if long {
            OpenFor::Worker
        } else {
            OpenFor::Command
        };
        self.open_for(purpose, if_missing)
    }

    pub fn open_for(
        &self,
        purpose: OpenFor,
        if_missing: IfMissing,
    ) -> Result<Box<dyn Store>, Failure> {
        Ok(store::open(&self.location()?, purpose, if_missing)?)
    }
}

fn default_db_path() -> Result<PathBuf, Failure> {
    store::data_home()
        .map(|home| home.join("queue.db"))
        .ok_or_else(|| {
            Failure::usage("cannot find a home directory; set QUEUECTL_HOME or pass --db")
        })
}

/// Reads `file` (`-` for stdin) as JSON lines for `enqueue --file` and `import`:
/// `parse` turns each non-blank line into an item, and every error names the file,
/// the line and that nothing was `done` ("enqueued", "imported"). An id (from `id`)
/// that appears twice is refused the same way. Nothing is written before the whole
/// file has been read, so a bad line leaves the store untouched.
pub(crate) fn read_json_lines<T, E: std::fmt::Display>(
    file: &str,
    done: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>, Failure> {
    use std::io::{BufRead, BufReader, Read};
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| {
            Failure::usage(format!(
                "cannot read {file}: {e}; give a readable file of JSON lines, or - for stdin"
            ))
        })?)
    };
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let number = index + 1;
        let fail = |why: String| {
            Failure::usage(format!("{file}: line {number}: {why}; nothing was {done}"))
        };
        let line = line.map_err(|e| fail(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = parse(&line).map_err(|e| fail(e.to_string()))?;
        if !seen.insert(id(&item).to_owned()) {
            return Err(fail(format!("id '{}' appears twice", id(&item))));
        }
        items.push(item);
    }
    Ok(items)
}

/// Converts an I/O error on stdout into a failure (a closed pipe ends quietly).
pub(crate) fn printed(result: std::io::Result<()>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::runtime(format!("cannot write output: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-line form of the error clap gives for `queuectl ARGS`.
    fn error_line(args: &[&str]) -> String {
        let argv = std::iter::once("queuectl").chain(args.iter().copied());
        let error = parse(argv.map(Into::into)).expect_err("the arguments are refused");
        one_line(&error.render().to_string())
    }

    #[test]
    fn an_unknown_flag_keeps_the_tip_and_names_the_help_to_read() {
        assert_eq!(
            error_line(&["enqueue", "--bogus"]),
            "unexpected argument '--bogus' found; to pass '--bogus' as a value, use \
             '-- --bogus'; see 'queuectl enqueue --help'"
        );
    }

    #[test]
    fn missing_arguments_are_listed_on_the_line() {
        assert_eq!(
            error_line(&["show"]),
            "the following required arguments were not provided: <ID>; \
             see 'queuectl show --help'"
        );
        assert_eq!(
            error_line(&["config", "set"]),
            "the following required arguments were not provided: <KEY>, <VALUE>; \
             see 'queuectl config set --help'"
        );
    }

    #[test]
    fn a_bad_value_without_usage_points_to_help() {
        assert_eq!(
            error_line(&["worker", "start", "--count", "x"]),
            "invalid value 'x' for '--count <N>': invalid digit found in string; \
             try '--help'"
        );
    }

    #[test]
    fn possible_values_follow_the_error() {
        assert_eq!(
            error_line(&["--color", "sometimes", "status"]),
            "invalid value 'sometimes' for '--color <WHEN>'; possible values: auto, always, \
             never; try '--help'"
        );
    }

    #[test]
    fn an_unknown_subcommand_names_the_top_level_help() {
        let line = error_line(&["frobnicate"]);
        assert!(
            line.starts_with("unrecognized subcommand 'frobnicate'"),
            "{line}"
        );
        assert!(line.ends_with("; see 'queuectl --help'"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
