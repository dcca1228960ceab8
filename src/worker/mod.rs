//! Workers: claiming jobs, running their commands, keeping their leases, and
//! recovering the jobs of workers that died.
//!
//! [`supervisor`] is the worker process (`worker start`), [`exec`] runs one attempt
//! as a child process, [`recovery`] releases jobs whose worker is gone, and
//! [`spawn`] starts a job's shell, and [`platform`] holds the operating-system details
//! they share.

pub mod exec;
pub mod platform;
pub mod recovery;
pub mod spawn;
pub mod supervisor;

pub use supervisor::{Executor, Options, Summary, run};
