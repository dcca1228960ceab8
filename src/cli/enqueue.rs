//! `queuectl enqueue`: one job from JSON, `--command` or the words after `--`, or
//! many from a JSONL file (`--file`) or a file of shell command lines (`--lines`),
//! all or nothing.
//!
//! The words after `--` are one command line when there is one word
//! (`-- 'make && deploy'`) and an argument vector, each word shell-quoted, when there
//! are several (`-- touch "my file"`): see [`crate::job::command_from_words`]. Words
//! without `--` are refused with the two ways to write them, since joining them
//! silently is what made quoting go wrong.

use serde_json::Value;

use std::collections::BTreeMap;

use super::output::job_json;
use super::{Context, printed};
use crate::error::{Failure, InputError};
use crate::job::options::parse_env_pair;
use crate::job::spec::DurationSpec;
use crate::job::{Job, JobSpec, NewJob, command_from_words};
use crate::store::{IfMissing, Store};

mod lines;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl enqueue '{\"id\":\"job1\",\"command\":\"sleep 2\"}'\n  \
    queuectl enqueue --command 'make test' --max-retries 5\n  \
    queuectl enqueue -- touch \"my file\"        runs touch with one argument\n  \
    queuectl enqueue -- 'make && deploy'       one word: a shell command line\n  \
    queuectl enqueue --file jobs.jsonl\n  \
    queuectl enqueue --lines commands.txt --queue batch\n  \
    queuectl enqueue --wait -- make test && deploy")]
pub struct Args {
    /// The job as a JSON object: {"command": "...", "id": "...", "max_retries": N}
    /// (a command goes after -- or in --command, not here)
    #[arg(value_name = "JSON", conflicts_with_all = ["command", "file", "lines"])]
    job: Vec<String>,

    /// The shell command to run
    #[arg(long, conflicts_with = "file")]
    command: Option<String>,

    /// The job id (default: a generated id of 12 random characters)
    #[arg(long, conflicts_with_all = ["file", "lines"])]
    id: Option<String>,

    /// Retries after the first run (default: the max-retries setting)
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with = "file"
    )]
    max_retries: Option<i64>,

    /// Kill an attempt still running after DURATION (30s, 5m, 2h; default: the
    /// job-timeout setting); it counts as a failed attempt
    #[arg(long, value_name = "DURATION", conflicts_with = "file")]
    timeout: Option<String>,

    /// Higher runs first: an integer from -1000 to 1000 (default 0)
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with = "file"
    )]
    priority: Option<i64>,

    /// Do not start before TIME: RFC 3339 (2026-12-01T09:00:00Z) or local
    /// "2026-12-01 09:00[:SS]"
    #[arg(long, value_name = "TIME", conflicts_with_all = ["file", "delay"])]
    run_at: Option<String>,

    /// Do not start before DURATION from now (30s, 5m, 2h)
    #[arg(long, value_name = "DURATION", conflicts_with = "file")]
    delay: Option<String>,

    /// The queue to put the job in (default: default)
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    queue: Option<String>,

    /// Run only once job ID (or a unique prefix of it) has completed (repeatable);
    /// if it ends dead or cancelled, this job is cancelled
    #[arg(long, value_name = "ID", conflicts_with = "file")]
    after: Vec<String>,

    /// Create nothing while an unfinished job has this key (prints `Exists: ID`)
    #[arg(long, value_name = "KEY", conflicts_with_all = ["file", "lines"])]
    unique_key: Option<String>,

    /// Set an environment variable for the command (repeatable)
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "file")]
    env: Vec<String>,

    /// Run the command in DIR (default: the current directory)
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    cwd: Option<String>,

    /// Enqueue one JSON job per line from FILE (- for stdin), all or none
    #[arg(long, value_name = "FILE", conflicts_with = "lines")]
    file: Option<String>,

    /// Enqueue one shell command per line from FILE (- for stdin), all or none,
    /// each with the other options given; blank lines and lines starting with #
    /// are skipped
    #[arg(long, value_name = "FILE", conflicts_with_all = ["command", "words"])]
    lines: Option<String>,

    /// Then follow the job's output until it finishes and exit with its exit code,
    /// like `logs -f` (with --file or --lines: wait for all of them, like `wait`)
    #[arg(long)]
    wait: bool,

    /// The command, after --: one word is a shell command line ('a && b'); several
    /// are run as given, each word shell-quoted (like nohup or xargs)
    #[arg(last = true, value_name = "COMMAND")]
    words: Vec<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::runtime(format!("cannot read the current directory: {e}")))?
        .to_string_lossy()
        .into_owned();
    let wait = args.wait;
    if let Some(file) = &args.file {
        return enqueue_file(ctx, file, &cwd, wait);
    }
    if let Some(file) = args.lines.clone() {
        // The options are checked once, before any line is read: a bad --priority
        // is not a line's fault. The probe command stands for every line's.
        let template = flag_job(args, "true".into())?.validate(&cwd)?;
        let jobs = lines::read(&file, &template)?;
        return enqueue_many(ctx, jobs, wait);
    }
    let mut job = single_job(args)?.validate(&cwd)?;
    let mut store = ctx.open_to_watch(wait, IfMissing::Create)?;
    super::ids::resolve_after(store.as_mut(), std::slice::from_mut(&mut job))?;
    let enqueued = store.enqueue(std::slice::from_ref(&job))?;
    if let Some(Some(existing)) = enqueued.existing.first() {
        return print_existing(ctx, store.as_mut(), existing);
    }
    if wait {
        // stdout carries only the job's output (or, with --json, the job at the
        // end), so `enqueue --wait -- cmd | grep` sees what cmd printed.
        eprintln!("Enqueued: {}", job.id);
        let code = if ctx.printer.json {
            let code = super::wait::wait_for_quietly(store.as_mut(), &job.id)?;
            let stored = super::jobs::find(store.as_mut(), &job.id)?;
            printed(ctx.printer.json(&job_json(&stored)))?;
            code
        } else {
            let sink = super::follow::Sink::stdout(false);
            super::follow::follow(store.as_mut(), &job.id, sink, None)?
        };
        return super::logs::exit_with(code);
    }
    if ctx.printer.json {
        // Read back: the store filled in the settings' defaults (max-retries,
        // job-timeout) in the enqueue transaction.
        let stored = match store.job(&job.id)? {
            Some(stored) => stored,
            None => Job::pending(job, 0, enqueued.created_at),
        };
        return printed(ctx.printer.json(&job_json(&stored)));
    }
    printed(ctx.printer.line(&format!("Enqueued: {}", job.id)))
}

/// A unique key matched the unfinished job `id`: nothing was created; says which
/// job holds the key (`--json`: that job, marked `"duplicate": true`), exit 0.
fn print_existing(ctx: &Context, store: &mut dyn Store, id: &str) -> Result<(), Failure> {
    if ctx.printer.json {
        let existing = super::jobs::find(store, id)?;
        let mut json = job_json(&existing);
        json["duplicate"] = Value::Bool(true);
        return printed(ctx.printer.json(&json));
    }
    printed(ctx.printer.line(&format!("Exists: {id}")))
}

/// Whether any per-job flag was given (they go with --command or --, not JSON).
fn has_job_flags(args: &Args) -> bool {
    args.id.is_some()
        || args.max_retries.is_some()
        || args.timeout.is_some()
        || args.priority.is_some()
        || args.run_at.is_some()
        || args.delay.is_some()
        || args.queue.is_some()
        || !args.after.is_empty()
        || args.unique_key.is_some()
        || !args.env.is_empty()
        || args.cwd.is_some()
}

/// Turns the three single-job forms into one [`JobSpec`].
fn single_job(args: Args) -> Result<JobSpec, InputError> {
    let words = command_from_words(&args.words)?;
    let json = match args.job.as_slice() {
        [] => None,
        [json] if json.trim_start().starts_with('{') => Some(json.clone()),
        words => return Err(looks_like_a_command(words)),
    };
    match (json, args.command.clone(), words) {
        (Some(json), None, None) => {
            if has_job_flags(&args) {
                return Err(InputError::Invalid(
                    "job options such as --id, --priority or --env go with --command or --; put them inside the JSON instead (\"id\", \"priority\", \"env\", ...)".into(),
                ));
            }
            JobSpec::from_json(&json)
        }
        (None, Some(command), None) | (None, None, Some(command)) => flag_job(args, command),
        (None, None, None) => Err(InputError::Invalid(
            "nothing to enqueue; give a JSON job, --command '...', --file FILE, --lines FILE, or a command after --".into(),
        )),
        _ => Err(InputError::Invalid(
            "give the job once: as JSON, with --command, or after --, not several of them".into(),
        )),
    }
}

/// `command` with the job options given as flags.
fn flag_job(args: Args, command: String) -> Result<JobSpec, InputError> {
    let env = if args.env.is_empty() {
        None
    } else {
        let pairs = args.env.iter().map(|pair| parse_env_pair(pair));
        Some(pairs.collect::<Result<BTreeMap<_, _>, _>>()?)
    };
    Ok(JobSpec {
        id: args.id,
        command,
        max_retries: args.max_retries,
        timeout: args.timeout.map(DurationSpec::Text),
        priority: args.priority,
        run_at: args.run_at,
        delay: args.delay.map(DurationSpec::Text),
        queue: args.queue,
        after: args.after,
        unique_key: args.unique_key,
        env,
        cwd: args.cwd,
    })
}

/// `enqueue echo hello`: words given without `--`, which is not a JSON job. Says how
/// to write it as the argument vector typed and as one command line.
fn looks_like_a_command(words: &[String]) -> InputError {
    let line = words.join(" ");
    let as_words = command_from_words(words).ok().flatten().unwrap_or_default();
    let as_line = shlex::try_quote(&line).map_or_else(|_| line.clone(), |q| q.into_owned());
    let message = format!(
        "'{line}' is not a JSON job and looks like a command; put it after -- (queuectl enqueue -- {as_words}) or use --command {as_line}"
    );
    // One line, whatever the words hold.
    let message = super::output::visible(&message).replace('\n', "\\n");
    InputError::Invalid(message)
}

fn enqueue_file(ctx: &Context, file: &str, cwd: &str, wait: bool) -> Result<(), Failure> {
    let jobs = super::read_json_lines(
        file,
        "enqueued",
        |line| JobSpec::from_json(line).and_then(|spec| spec.validate(cwd)),
        |job| &job.id,
    )?;
    enqueue_many(ctx, jobs, wait)
}

/// Enqueues `jobs` (from `--file` or `--lines`) all or nothing, then prints one id
/// per line (`--json`: an array of ids), or with `wait` waits for all of them.
fn enqueue_many(ctx: &Context, mut jobs: Vec<NewJob>, wait: bool) -> Result<(), Failure> {
    let mut store = ctx.open_to_watch(wait, IfMissing::Create)?;
    super::ids::resolve_after(store.as_mut(), &mut jobs)?;
    let enqueued = store.enqueue(&jobs).map_err(|e| {
        let mut failure = Failure::from(e);
        failure.message.push_str("; nothing was enqueued");
        failure
    })?;
    // A job whose unique key an unfinished job holds is that job from here on.
    let jobs: Vec<NewJob> = jobs
        .into_iter()
        .zip(enqueued.existing.iter().chain(std::iter::repeat(&None)))
        .map(|(job, existing)| match existing {
            Some(id) => NewJob {
                id: id.clone(),
                ..job
            },
            None => job,
        })
        .collect();
    if wait {
        if !ctx.printer.json {
            let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            printed(ctx.printer.line(&ids.join("\n")))?;
        }
        let ids = jobs.into_iter().map(|j| j.id).collect();
        let code = super::wait::wait_for(ctx, store.as_mut(), ids, None)?;
        return super::logs::exit_with(code);
    }
    if ctx.printer.json {
        let ids: Vec<Value> = jobs.into_iter().map(|j| Value::String(j.id)).collect();
        return printed(ctx.printer.json(&Value::Array(ids)));
    }
    let mut out = String::with_capacity(jobs.len() * 37);
    for job in &jobs {
        out.push_str(&job.id);
        out.push('\n');
    }
    printed(std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        out.as_bytes(),
    ))
}
