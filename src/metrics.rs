//! Prometheus text exposition of the queue (placeholder until the metrics work of
//! issue 13 lands: it keeps this signature and replaces the body).
//!
//! Invariant: the document is valid text format 0.0.4: HELP and TYPE lines before
//! each family, label values escaped, no label with unbounded values.

use std::fmt::Write;

use crate::error::StoreError;
use crate::job::JobState;
use crate::store::Store;

/// The exposition document for the store: jobs by state and queue.
pub fn exposition(store: &mut dyn Store) -> Result<String, StoreError> {
    let mut out = String::new();
    out.push_str("# HELP queuectl_jobs Jobs in the store by state and queue.\n");
    out.push_str("# TYPE queuectl_jobs gauge\n");
    for queue in store.queues()? {
        for state in JobState::ALL {
            let _ = writeln!(
                out,
                "queuectl_jobs{{queue=\"{}\",state=\"{}\"}} {}",
                escape(&queue.name),
                state.as_str(),
                queue.counts.get(state)
            );
        }
    }
    Ok(out)
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
