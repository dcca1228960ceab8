//! queuectl: a crash-safe background job queue for shell commands.
//!
//! The crate is layered so dependencies point inward:
//! - [`job`], [`backoff`], [`config`] and [`duration`] are the core: the job model, its state
//!   machine, retry delays and settings. They know nothing of SQL or terminals.
//! - [`store`] persists jobs behind the [`store::Store`] trait, one module per backend.
//! - [`worker`] claims jobs, runs their commands and keeps their leases.
//! - [`cli`] parses arguments and prints results; `main.rs` only calls [`cli::main`].

pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod duration;
pub mod error;
pub mod job;
pub mod log;
pub mod store;
pub mod transfer;
pub mod worker;
