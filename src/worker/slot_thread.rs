//! The thread behind each slot: it runs the jobs the supervisor hands it, one at a
//! time, and posts each result back as an [`Event::Done`].
//!
//! The thread never touches the store. It ends when the supervisor drops its job
//! channel ([`SlotThread::stop`]) or stops listening for results. An attempt the
//! supervisor kills gets SIGTERM first and SIGKILL [`KILL_GRACE`] later.

use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::WorkerError;
use crate::job::{Job, Outcome};
use crate::store::WorkerInfo;
use crate::worker::events::Event;
use crate::worker::exec::{self, Execution, RunHandle, Spool};
use crate::worker::options::{Executor, Options};
use crate::worker::slots::Run;

/// Time a killed job's group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The supervisor's end of a slot thread.
pub struct SlotThread {
    jobs: Option<Sender<Job>>,
    /// Signals the running attempt's process group.
    handle: Arc<RunHandle>,
    thread: Option<JoinHandle<()>>,
}

impl SlotThread {
    /// Starts the thread of slot number `index`, which runs jobs as worker `info`.
    pub fn start(
        index: usize,
        info: &WorkerInfo,
        options: &Options,
        spool: &Spool,
        events: &Sender<Event>,
    ) -> Result<SlotThread, WorkerError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let handle = Arc::new(RunHandle::default());
        let thread_handle = Arc::clone(&handle);
        let spool = spool.clone();
        let events = events.clone();
        let executor = options.executor;
        let on_spawn = options.on_spawn.clone();
        let mut files = spool
            .slot_files(&info.id)
            .map_err(|e| WorkerError::io("cannot create files in the spool", e))?;
        let thread = thread::Builder::new()
            .name(info.id.clone())
            .spawn(move || {
                while let Ok(job) = inbox.recv() {
                    let spawned = || {
                        if let Some(hook) = &on_spawn {
                            hook(&job);
                        }
                    };
                    let execution = match executor {
                        Executor::Shell => exec::run_shell(
                            &job,
                            job.lease_token,
                            &spool,
                            &mut files,
                            &thread_handle,
                            &spawned,
                        ),
                        Executor::Noop => {
                            spawned();
                            Execution {
                                outcome: Outcome::Succeeded,
                                output_tail: None,
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
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread to run now.
    pub fn run(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Asks the attempt of `run` to end now (SIGTERM to its group); it gets SIGKILL
    /// if it is still running after [`KILL_GRACE`] ([`SlotThread::escalate`]).
    pub fn terminate(&self, run: &mut Run) {
        self.handle.signal(libc::SIGTERM);
        run.kill_at = Some(Instant::now() + KILL_GRACE);
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
