//! `worker start --json` and `worker stop --json`: JSON lines of events on stdout,
//! one object per line, each with an `event` key and its `time` (RFC 3339 UTC), in
//! the order things happened.
//!
//! A stream of events is always one line per event, on a terminal too, so `jq`,
//! `grep` and `tail -f` can follow it; the human log stays on stderr. Keys are
//! snake_case and carry their unit (`duration_ms`).

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};

use super::output::timestamp;
use crate::worker::notice::{Notice, NoticeSink, StopReason};

/// Prints `event` as one line on stdout. A closed stdout is no reason for a worker
/// to stop working, so write errors are ignored.
pub fn emit(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, event)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// An event object: `{"event": name, "time": now, ...fields}`.
pub fn event(name: &str, fields: Value) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("event".into(), json!(name));
    object.insert(
        "time".into(),
        json!(timestamp(jiff::Timestamp::now().as_millisecond())),
    );
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object)
}

/// Prints a worker process's notices as JSON lines from a thread of its own, so a
/// reader that stops reading (a pager, a stopped pipeline) never blocks the
/// supervisor, and with it the heartbeats of running jobs. Dropping it waits until
/// every event sent is written; drop the sinks ([`JsonLines::sink`]) first.
pub struct JsonLines {
    events: Option<Sender<Value>>,
    writer: Option<JoinHandle<()>>,
}

impl JsonLines {
    /// Starts the writer thread; without one, events are printed by the caller.
    pub fn start() -> JsonLines {
        let (events, inbox) = mpsc::channel::<Value>();
        let writer = thread::Builder::new()
            .name("json-events".into())
            .spawn(move || {
                for event in inbox {
                    emit(&event);
                }
            });
        match writer {
            Ok(writer) => JsonLines {
                events: Some(events),
                writer: Some(writer),
            },
            Err(_) => JsonLines {
                events: None,
                writer: None,
            },
        }
    }

    /// A sink turning each notice into its event (stamped now) for the writer.
    pub fn sink(&self) -> NoticeSink {
        match self.events.clone() {
            Some(events) => Arc::new(move |notice: &Notice<'_>| {
                let _ = events.send(notice_json(notice));
            }),
            None => Arc::new(|notice: &Notice<'_>| emit(&notice_json(notice))),
        }
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        drop(self.events.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The JSON event for `notice`.
pub fn notice_json(notice: &Notice<'_>) -> Value {
    match notice {
        Notice::Started {
            host,
            pid,
            workers,
            store,
        } => event(
            "started",
            json!({"host": host, "pid": pid, "workers": workers, "store": store}),
        ),
        Notice::JobStarted {
            worker,
            job,
            attempt,
        } => event(
            "job_started",
            json!({
                "worker": worker,
                "job": job.id,
                "attempt": attempt,
                "command": job.command,
                "queue": job.queue,
            }),
        ),
        Notice::JobEnded {
            worker,
            job,
            attempt,
            outcome,
            exit_code,
            error,
            took,
            state,
        } => event(
            "job_ended",
            json!({
                "worker": worker,
                "job": job.id,
                "attempt": attempt,
                "outcome": outcome.as_str(),
                "exit_code": exit_code,
                "error": error,
                "duration_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                "state": state.as_str(),
            }),
        ),
        Notice::Stopping { reason, force } => {
            let (why, signal) = match reason {
                StopReason::Signal(name) => ("signal", Some(*name)),
                StopReason::Requested => ("worker_stop", None),
                StopReason::Burst => ("burst", None),
            };
            event(
                "stopping",
                json!({"reason": why, "signal": signal, "force": force}),
            )
        }
        Notice::Stopped { summary } => event(
            "stopped",
            json!({
                "succeeded": summary.succeeded,
                "failed": summary.failed,
                "interrupted": summary.interrupted,
                "round_trips": summary.round_trips,
                "claim_round_trips": summary.claim_round_trips,
                "empty_claims": summary.empty_claims,
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_starts_with_its_name_and_time() {
        let value = event("stopping", json!({"reason": "signal", "signal": "SIGHUP"}));
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["event", "time", "reason", "signal"]);
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_stop_by_signal_names_it() {
        let stopping = Notice::Stopping {
            reason: StopReason::Signal("SIGHUP"),
            force: false,
        };
        let value = notice_json(&stopping);
        assert_eq!(value["event"], "stopping");
        assert_eq!(value["reason"], "signal");
        assert_eq!(value["signal"], "SIGHUP");
        assert_eq!(value["force"], false);
    }
}
