//! The thread behind each slot: it runs the jobs the supervisor hands it, one at a
//! time, and posts each result back as an [`Event::Done`].
//!
//! The thread never touches the store. It ends when the supervisor drops its job
//! channel ([`SlotThread::stop`]) or stops listening for results. An attempt the
//! supervisor kills gets SIGTERM first and SIGKILL a grace period later: `kill-grace`
//! for a timeout or a cancel, [`KILL_GRACE`] for a forced stop or a lost lease.

use std::fs::File;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::WorkerError;
use crate::job::{Job, Outcome};
use crate::store::{AttemptFacts, WorkerInfo};
use crate::worker::events::Event;
use crate::worker::exec::{self, Execution, RunHandle};
use crate::worker::guard::GuardCell;
use crate::worker::options::{Executor, Options};
use crate::worker::slots::Run;
use crate::worker::spool::Spool;

/// Time the group of a job killed by a forced stop or a lost lease gets between
/// SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// A job for the thread to run, with the output limit in force when it was handed
/// over (settings are re-read while the worker runs).
struct Attempt {
    job: Job,
    output_limit: u64,
}

/// The supervisor's end of a slot thread.
pub struct SlotThread {
    jobs: Option<Sender<Attempt>>,
    /// Signals the running attempt's process group.
    handle: Arc<RunHandle>,
    /// The slot's output working file, read by the supervisor while an attempt runs.
    output: File,
    thread: Option<JoinHandle<()>>,
}

impl SlotThread {
    /// Starts the thread of slot number `index`, which runs jobs as worker `info`;
    /// its attempts announce their process group in `guard` if there is one.
    pub fn start(
        index: usize,
        info: &WorkerInfo,
        options: &Options,
        spool: &Spool,
        guard: Option<GuardCell>,
        events: &Sender<Event>,
    ) -> Result<SlotThread, WorkerError> {
        let (jobs, inbox) = mpsc::channel::<Attempt>();
        let handle = Arc::new(RunHandle::guarded(guard));
        let thread_handle = Arc::clone(&handle);
        let events = events.clone();
        let executor = options.executor;
        let on_spawn = options.on_spawn.clone();
        let mut files = spool
            .slot_files(&info.id)
            .map_err(|e| WorkerError::io("cannot create files in the spool", e))?;
        let output = files
            .output_handle()
            .map_err(|e| WorkerError::io("cannot open the output file in the spool", e))?;
        let thread = thread::Builder::new()
            .name(info.id.clone())
            .spawn(move || {
                while let Ok(Attempt { job, output_limit }) = inbox.recv() {
                    let spawned = || {
                        if let Some(hook) = &on_spawn {
                            hook(&job);
                        }
                    };
                    let execution = match executor {
                        Executor::Shell => exec::run_shell(
                            &job,
                            job.lease_token,
                            &mut files,
                            &thread_handle,
                            output_limit,
                            &spawned,
                        ),
                        Executor::Noop => {
                            spawned();
                            Execution {
                                outcome: Outcome::Succeeded,
                                output_tail: None,
                                output: None,
                                facts: AttemptFacts::default(),
                            }
                        }
                    };
                    if events
                        .send(Event::Done {
                            slot: index,
                            execution,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .map_err(|e| WorkerError::io("cannot start a worker thread", e))?;
        Ok(SlotThread {
            jobs: Some(jobs),
            handle,
            output,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread to run now, keeping about `output_limit` bytes of
    /// its output.
    pub fn run(&self, job: Job, output_limit: u64) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Attempt { job, output_limit });
        }
    }

    /// The output working file of the slot's running attempt.
    pub fn output(&self) -> &File {
        &self.output
    }

    /// Asks the attempt of `run` to end now (SIGTERM to its group); it gets SIGKILL
    /// if it is still running `grace` later ([`SlotThread::escalate`]). A run already
    /// being killed keeps its earlier SIGKILL time.
    pub fn terminate(&self, run: &mut Run, grace: Duration) {
        self.handle.signal(libc::SIGTERM);
        let kill_at = Instant::now() + grace;
        run.kill_at = Some(run.kill_at.map_or(kill_at, |at| at.min(kill_at)));
    }

    /// Sends SIGKILL to the attempt of `run` if its grace after SIGTERM is over.
    pub fn escalate(&self, run: &mut Run, now: Instant) {
        if run.kill_at.is_some_and(|at| now >= at) {
            self.handle.signal(libc::SIGKILL);
            run.kill_at = None;
        }
    }

    /// Lets the thread end once its current job is done, and waits for it.
    pub fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
