//! How a worker process stops: a stop request (a signal, `worker stop`, `--burst`
//! running dry) first stops claiming and gives back jobs claimed ahead; a graceful
//! stop then lets running jobs finish, a forced one kills them (they go back to
//! `pending` without using an attempt). Once nothing runs, [`Supervisor::shut_down`]
//! records what is left and deregisters the workers.
//!
//! SIGINT, SIGTERM and SIGHUP all start a graceful stop, logged with the signal's
//! name. A second SIGINT or SIGTERM escalates to a forced stop; SIGHUP never does:
//! it is what a closing terminal or a dropped SSH session sends, sometimes more than
//! once (the shell forwards it, and the kernel sends it again to the foreground job
//! when the shell exits), and nobody closing a terminal asks for their jobs to be
//! killed (DECISIONS.md §16).

use std::thread;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::log;
use crate::store::{Exchange, StopRequest, WorkerInfo, WorkerState};
use crate::worker::notice::{Notice, StopReason, stop_signal_name};
use crate::worker::slot_runner::KILL_GRACE;

impl Supervisor {
    /// Sends `notice` to the sink `worker start` gave, if any.
    pub(super) fn notify(&self, notice: &Notice<'_>) {
        if let Some(sink) = &self.options.on_notice {
            sink(notice);
        }
    }

    /// A stop signal arrived: see the module docs.
    pub(super) fn on_signal(&mut self, signal: i32) {
        if signal == libc::SIGTSTP {
            self.pause_for_the_terminal();
            return;
        }
        let name = stop_signal_name(signal);
        let next = match self.stop {
            StopRequest::None => StopRequest::Graceful,
            _ if signal == libc::SIGHUP => {
                log::info(&format!(
                    "{name} received again: still {}",
                    self.stop_plan()
                ));
                return;
            }
            _ => StopRequest::Force,
        };
        self.request_stop(next, StopReason::Signal(name));
    }

    /// Ctrl-Z (SIGTSTP), deferred to here: signals reach this thread as events
    /// between store round trips, so no transaction is open and no SQLite write
    /// lock is held while the process is stopped (stopped inside one, it froze
    /// every other user of the store). Stops the whole process as the terminal
    /// asked; `fg` or SIGCONT resumes it where it was. Jobs run in process groups
    /// of their own and keep running; if the pause outlasts the lease, other
    /// workers take them over as after any lost worker.
    fn pause_for_the_terminal(&mut self) {
        log::info(
            "SIGTSTP received: stopping between store round trips (resume with fg or SIGCONT)",
        );
        // SAFETY: raise has no memory preconditions; SIGSTOP stops this process.
        unsafe { libc::raise(libc::SIGSTOP) };
        log::info("continued");
    }

    /// What the process does now that it stops, in the words of its log.
    fn stop_plan(&self) -> &'static str {
        match self.stop {
            StopRequest::Force => "killing running jobs, they go back to pending",
            _ => "finishing running jobs, then exiting",
        }
    }

    pub(super) fn request_stop(&mut self, stop: StopRequest, reason: StopReason) {
        let before = self.stop;
        self.stop = self.stop.max(stop);
        if self.stop == before || self.stop == StopRequest::None {
            return;
        }
        for index in 0..self.slots.len() {
            self.release_queued(index);
        }
        let force = self.stop == StopRequest::Force;
        let why = reason.describe();
        match reason {
            StopReason::Burst => log::info(&format!("{why}; stopping")),
            _ if force => log::info(&format!("{why}: {}", self.stop_plan())),
            StopReason::Signal("SIGHUP") => log::info(&format!(
                "{why}: {} (SIGTERM, Ctrl-C or `worker stop --force` kills them)",
                self.stop_plan()
            )),
            _ => log::info(&format!(
                "{why}: {} (stop again to kill them)",
                self.stop_plan()
            )),
        }
        self.notify(&Notice::Stopping { reason, force });
        if force {
            for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
                if let Some(run) = slot.run.as_mut().filter(|r| !r.forced) {
                    run.forced = true;
                    runner.terminate(run, KILL_GRACE);
                }
            }
        }
    }

    /// Records what is left and deregisters the workers (no shell runs any more).
    pub(super) fn shut_down(&mut self, infos: &[WorkerInfo]) {
        let ids: Vec<String> = infos.iter().map(|w| w.id.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let flushed = self.outbox.has_no_results()
                || self
                    .store
                    .exchange(&Exchange {
                        finished: self.outbox.finished(),
                        lease_timeout: self.config.lease_timeout,
                        ..Exchange::default()
                    })
                    .is_ok();
            if flushed {
                drop(self.outbox.committed());
                if self.store.end_workers(&ids, WorkerState::Stopped).is_ok() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                log::warn("could not record the final results; the store will recover the jobs");
                break;
            }
            thread::sleep(self.store_retry.back_off());
        }
        log::info(&format!(
            "workers stopped: {} succeeded, {} failed, {} interrupted",
            self.summary.succeeded, self.summary.failed, self.summary.interrupted
        ));
        self.notify(&Notice::Stopped {
            summary: &self.summary,
        });
    }
}
