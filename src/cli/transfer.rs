//! `queuectl export` and `queuectl import`: parse, call the store, print. The line
//! format and what an import changes live in [`crate::transfer`].

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;

use serde_json::json;

use super::{Context, printed};
use crate::error::{Failure, StoreError};
use crate::transfer;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    queuectl export > jobs.jsonl\n  \
    queuectl --db postgres://user@db.example/queue import jobs.jsonl")]
pub struct ExportArgs {
    /// Only jobs in this state: pending, processing, completed, failed or dead
    #[arg(long)]
    state: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A file written by `queuectl export` (- for stdin)
    #[arg(value_name = "FILE")]
    file: String,
}

/// Prints every job (with its attempts and output tails) as one JSON line each, as
/// the store reads them.
pub fn export(ctx: &Context, args: ExportArgs) -> Result<(), Failure> {
    let state = super::jobs::parse_state(args.state.as_deref())?;
    let mut store = ctx.open_to_read()?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut written = Ok(());
    store.export(state, &mut |record| {
        let line = transfer::to_line(&record);
        written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    printed(written.and_then(|()| out.flush()))
}

/// Reads a whole export, validates every line, then imports all of it or nothing.
pub fn import(ctx: &Context, args: ImportArgs) -> Result<(), Failure> {
    let read = super::read_json_lines(&args.file, "imported", transfer::from_line, |(r, _)| {
        &r.job.id
    })?;
    let requeued = read
        .iter()
        .filter(|(_, was_processing)| *was_processing)
        .count();
    let records: Vec<_> = read.into_iter().map(|(record, _)| record).collect();
    let mut store = ctx.open()?;
    store.import(&records).map_err(|e| match e {
        StoreError::DuplicateId(id) => Failure::usage(format!(
            "a job with id '{id}' already exists in {}; nothing was imported",
            store.describe()
        )),
        e => {
            let mut failure = Failure::from(e);
            failure.message.push_str("; nothing was imported");
            failure
        }
    })?;
    if requeued > 0 {
        crate::log::info(&format!(
            "{requeued} job(s) were processing in the old store; they are pending here"
        ));
    }
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&json!({
            "imported": records.len(),
            "requeued": requeued,
            "store": store.describe(),
        })));
    }
    printed(p.line(&format!(
        "Imported {} jobs into {}",
        records.len(),
        store.describe()
    )))
}
