//! What runs each slot's jobs: the supervisor starts a job's shell here, sleeps on
//! its pidfd with everything else it waits for, and finishes the attempt here once
//! the shell has exited. No thread per slot: a job costs the worker the `vfork`
//! that starts its shell and the wake-up that ends it, nothing more (DECISIONS §29).
//!
//! The runner never touches the store. It holds at most one shell, unreaped until
//! [`SlotRunner::finish`], so the shell's pid and process group id stay ours while
//! the supervisor may signal them. An attempt the supervisor kills gets SIGTERM
//! first and SIGKILL a grace period later: `kill-grace` for a timeout or a cancel,
//! [`KILL_GRACE`] for a forced stop or a lost lease.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::WorkerError;
use crate::job::{Job, Outcome};
use crate::store::{AttemptFacts, WorkerInfo};
use crate::worker::exec::{self, Execution, Shell};
use crate::worker::guard::GuardCell;
use crate::worker::options::{Executor, Options, SpawnHook};
use crate::worker::slots::Run;
use crate::worker::spool::{SlotFiles, Spool};

/// Time the group of a job killed by a forced stop or a lost lease gets between
/// SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// How often a shell's exit is looked for where the kernel has no pidfds.
pub const EXIT_POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(5);

/// One slot's attempts: its working files and the shell it runs, if any.
pub struct SlotRunner {
    executor: Executor,
    on_spawn: Option<SpawnHook>,
    files: SlotFiles,
    /// Where the slot's attempts announce their process group to the attempt
    /// guard, if it runs.
    guard: Option<GuardCell>,
    /// The slot's output working file, read by the supervisor while an attempt runs.
    output: File,
    shell: Option<Shell>,
}

/// Where a slot's shell exit shows: a pidfd to sleep on, or a timer to look on.
pub enum ExitWatch {
    Fd(RawFd),
    Poll,
}

impl SlotRunner {
    /// The runner of the slot of worker `info`; its attempts announce their process
    /// group in `guard` if there is one.
    pub fn new(
        info: &WorkerInfo,
        options: &Options,
        spool: &Spool,
        guard: Option<GuardCell>,
    ) -> Result<SlotRunner, WorkerError> {
        let files = spool
            .slot_files(&info.id)
            .map_err(|e| WorkerError::io("cannot create files in the spool", e))?;
        let output = files
            .output_handle()
            .map_err(|e| WorkerError::io("cannot open the output file in the spool", e))?;
        Ok(SlotRunner {
            executor: options.executor,
            on_spawn: options.on_spawn.clone(),
            files,
            guard,
            output,
            shell: None,
        })
    }

    /// Starts `job` now, keeping about `output_limit` bytes of its output. Returns
    /// the attempt's end if it ended at once (the noop executor, or a shell that
    /// could not start); otherwise the shell runs until [`SlotRunner::finish`].
    pub fn run(&mut self, job: &Job, output_limit: u64) -> Option<Execution> {
        let spawned = || {
            if let Some(hook) = &self.on_spawn {
                hook(job);
            }
        };
        match self.executor {
            Executor::Noop => {
                spawned();
                Some(Execution {
                    outcome: Outcome::Succeeded,
                    output_tail: None,
                    output: None,
                    facts: AttemptFacts::default(),
                })
            }
            Executor::Shell => match exec::start_shell(
                job,
                job.lease_token,
                &mut self.files,
                self.guard.as_ref(),
                output_limit,
                &spawned,
            ) {
                Ok(shell) => {
                    self.shell = Some(shell);
                    None
                }
                Err(ended) => Some(*ended),
            },
        }
    }

    /// How the exit of the running shell shows, if a shell runs.
    pub fn exit_watch(&self) -> Option<ExitWatch> {
        let shell = self.shell.as_ref()?;
        Some(match &shell.exit_fd {
            Some(fd) => ExitWatch::Fd(fd.as_raw_fd()),
            None => ExitWatch::Poll,
        })
    }

    /// When the running attempt's run marker is due, if it is not written yet.
    pub fn mark_at(&self) -> Option<Instant> {
        self.shell.as_ref().and_then(Shell::mark_at)
    }

    /// Writes the running attempt's run marker if it is due
    /// ([`crate::worker::exec::MARK_AFTER`]).
    pub fn mark_if_due(&mut self, now: Instant) {
        if let Some(shell) = self.shell.as_mut()
            && shell.mark_at().is_some_and(|at| now >= at)
        {
            shell.mark(&self.files);
        }
    }

    /// Whether the running shell has exited (checked without a pidfd).
    pub fn has_exited(&self) -> bool {
        self.shell.as_ref().is_some_and(Shell::has_exited)
    }

    /// Ends the attempt whose shell has exited: reaps it and returns its result.
    pub fn finish(&mut self) -> Option<Execution> {
        let shell = self.shell.take()?;
        Some(exec::finish_shell(
            shell,
            &mut self.files,
            self.guard.as_ref(),
        ))
    }

    /// The output working file of the slot's running attempt.
    pub fn output(&self) -> &File {
        &self.output
    }

    /// Asks the attempt of `run` to end now (SIGTERM to its group); it gets SIGKILL
    /// if it is still running `grace` later ([`SlotRunner::escalate`]). A run already
    /// being killed keeps its earlier SIGKILL time.
    pub fn terminate(&self, run: &mut Run, grace: Duration) {
        if let Some(shell) = &self.shell {
            shell.signal(libc::SIGTERM);
        }
        let kill_at = Instant::now() + grace;
        run.kill_at = Some(run.kill_at.map_or(kill_at, |at| at.min(kill_at)));
    }

    /// Sends SIGKILL to the attempt of `run` if its grace after SIGTERM is over.
    pub fn escalate(&self, run: &mut Run, now: Instant) {
        if run.kill_at.is_some_and(|at| now >= at) {
            if let Some(shell) = &self.shell {
                shell.signal(libc::SIGKILL);
            }
            run.kill_at = None;
        }
    }
}
