//! queuectl: a crash-safe background job queue for shell commands.
//!
//! The crate is layered so dependencies point inward:
//! - [`job`], [`backoff`], [`config`], [`cron`] and [`duration`] are the core: the job
//!   model, its state machine, retry delays, settings and recurring schedules. They know
//!   nothing of SQL or terminals.
//! - [`store`] persists jobs behind the [`store::Store`] trait, one module per backend.
//! - [`worker`] claims jobs, runs their commands and keeps their leases.
//! - [`stats`] and [`metrics`] turn a store's raw aggregates into `stats` numbers
//!   and the Prometheus exposition; they know nothing of SQL or terminals.
//! - [`cli`] parses arguments and prints results; `main.rs` only calls [`cli::main`].
//! - [`text`] (control characters made visible) and [`log`] (the worker's log lines)
//!   serve every human-facing output; [`file_trust`] checks local files before use.
//! - [`dashboard`] serves the web UI and its JSON API (`queuectl dashboard`);
//!   [`metrics`] renders the Prometheus exposition.

// queuectl runs on Linux only, and says so at compile time rather than failing to
// build deep inside a module. Linux-specific: inotify wakes idle workers on the
// SQLite store (`store::sqlite`); `/proc/<pid>/stat` tells a live worker or job
// process from a reused pid, and `/proc/sys/kernel/hostname` names the host
// (`worker::platform`); shells start with `clone(CLONE_VM | CLONE_VFORK)` and
// `prctl(PR_SET_PDEATHSIG)`, so they die with their worker (`worker::spawn`).
#[cfg(not(target_os = "linux"))]
compile_error!(
    "queuectl supports Linux only: it relies on inotify, /proc, clone(CLONE_VFORK) and \
     prctl(PR_SET_PDEATHSIG) (see the comment above this error in src/lib.rs)"
);

pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod cron;
pub mod dashboard;
pub mod duration;
pub mod error;
pub mod file_trust;
pub mod job;
pub mod log;
pub mod metrics;
pub mod stats;
pub mod store;
pub mod text;
pub mod transfer;
pub mod worker;
