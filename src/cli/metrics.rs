//! `queuectl metrics`: prints the Prometheus text exposition of the store (see
//! [`crate::metrics`]) on stdout, for the node-exporter textfile collector or a cron
//! job. The document is the same `GET /metrics` serves; it is never JSON, so
//! `--json` changes nothing.

use super::{Context, printed};
use crate::error::Failure;

pub fn run(ctx: &Context) -> Result<(), Failure> {
    let mut store = ctx.open_to_read()?;
    let text = crate::metrics::exposition(store.as_mut())?;
    printed(write_all(&text))
}

fn write_all(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
