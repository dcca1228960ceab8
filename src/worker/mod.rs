//! Workers: claiming jobs, running their commands, keeping their leases, and
//! recovering the jobs of workers that died.
//!
//! [`supervisor`] is the worker process (`worker start`, configured by [`options`]):
//! its round loop asks [`slots`] what to claim, keeps results in an [`outbox`] until
//! they are committed, rides out store outages with [`store_retry`], squares its
//! books with the store after a reply that was lost with [`reconcile`], starts and
//! reaps each slot's shells through its [`slot_runner`], learns from [`run_report`]
//! what a run's end means, waits on one inbox of [`events`], and tells whoever
//! started it what happens through [`notice`]. [`exec`] runs one attempt as a child
//! process in the files [`spool`] keeps for its slot, [`exit_status`] says what its
//! end means, [`spawn`] starts a job's shell, [`guard`] kills what is left of the
//! running attempts if the worker process dies, [`attempt_output`] turns its output
//! into what the store keeps (and what is shipped while it runs), [`stopping`]
//! decides what a timeout or a cancel makes of a run, [`recovery`] releases jobs
//! whose worker is gone, [`retention`] deletes old finished jobs in the background,
//! and [`platform`] holds the operating-system details they share. [`detach`] starts
//! a worker process in the background (`worker start --detach`).

pub mod attempt_output;
pub mod detach;
pub mod events;
pub mod exec;
pub mod exit_status;
pub mod guard;
pub mod metrics_server;
pub mod notice;
pub mod options;
pub mod outbox;
pub mod platform;
pub mod reconcile;
pub mod recovery;
pub mod retention;
pub mod run_report;
pub mod slot_runner;
pub mod slots;
pub mod spawn;
pub mod spool;
pub mod spool_space;
pub mod stopping;
pub mod store_retry;
pub mod supervisor;

pub use options::{Executor, Options, Summary};
pub use supervisor::run;
