//! What a worker process and its store's wake-up thread tell each other about duty:
//! which process reacts to "one job arrived" wake-ups (DECISIONS §26).
//!
//! The supervisor says whether it could take a job now ([`Duty::set_ready`]); the
//! store's wake-up thread says whether this process is on duty ([`Duty::on_duty`]).
//! A store without duty (SQLite), or one whose wake-up connection is down, leaves
//! duty not `supported`, and the worker behaves as before (a timer claim a second). Invariant: `on_duty` is true only
//! while the wake-up thread holds duty on a live connection; it is cleared before
//! the connection is dropped or the duty released.

use std::sync::atomic::{AtomicBool, Ordering};

/// Shared by one worker process's supervisor and its store's wake-up thread.
#[derive(Debug)]
pub struct Duty {
    /// The queues the process serves (`worker start --queue`), `None`: all. Processes
    /// serving the same set share one duty.
    queues: Option<Vec<String>>,
    ready: AtomicBool,
    on_duty: AtomicBool,
    supported: AtomicBool,
}

impl Duty {
    pub fn new(queues: Option<&[String]>) -> Duty {
        let queues = queues.map(|q| {
            let mut q = q.to_vec();
            q.sort();
            q.dedup();
            q
        });
        Duty {
            queues,
            ready: AtomicBool::new(true),
            on_duty: AtomicBool::new(false),
            supported: AtomicBool::new(false),
        }
    }

    /// The queue set, sorted, as one text (`*` for all queues): the duty's name
    /// within a store.
    pub fn queue_set(&self) -> String {
        match &self.queues {
            None => "*".to_owned(),
            Some(q) => q.join("\u{1f}"),
        }
    }

    /// The supervisor: whether a slot is free to take a job now (false while every
    /// slot is busy or the process is stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The wake-up thread: this process holds duty (or no longer does).
    pub fn set_on_duty(&self, on: bool) {
        self.on_duty.store(on, Ordering::Relaxed);
    }

    pub fn on_duty(&self) -> bool {
        self.on_duty.load(Ordering::Relaxed)
    }

    /// The store: only the duty holder is told when one job arrives (true while
    /// its wake-up connection is up).
    pub fn set_supported(&self, supported: bool) {
        self.supported.store(supported, Ordering::Relaxed);
    }

    pub fn supported(&self) -> bool {
        self.supported.load(Ordering::Relaxed)
    }
}
