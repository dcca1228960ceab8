//! A run's start and its moves: a claimed job starts in its slot (or waits in the
//! slot's queue), the slot's runner starts its shell, jobs claimed ahead move to idle
//! slots or go back to the store, our copy of a job whose lease was lost is killed,
//! and a killed run gets SIGKILL when its grace is over.
//!
//! Invariant: a job is in exactly one slot's books (running or queued) from its
//! claim to its end, and a slot's runner runs a shell only while the slot's books
//! hold a run, so what the store is told and what runs here agree.

use std::time::Instant;

use super::Supervisor;
use crate::job::Job;
use crate::log;
use crate::store::Lease;
use crate::worker::notice::Notice;
use crate::worker::run_report;
use crate::worker::slot_runner::KILL_GRACE;
use crate::worker::slots::lease_of;
use crate::worker::stopping;

impl Supervisor {
    pub(super) fn dispatch(&mut self, worker_id: &str, job: Job) {
        if let Some((index, job)) = self.slots.accept(worker_id, job) {
            self.start(index, job);
        }
    }

    /// Starts `job` in slot `index`, which must be free.
    pub(super) fn start(&mut self, index: usize, job: Job) {
        self.slots[index].begin(job.clone(), Instant::now());
        self.hand_over(index, job);
    }

    /// Hands `job`, already running in the slot's books, to the slot's runner.
    pub(super) fn hand_over(&mut self, index: usize, job: Job) {
        if self.options.log_jobs {
            log::info(&run_report::start_line(&self.slots[index].worker_id, &job));
        }
        self.notify(&Notice::JobStarted {
            worker: &self.slots[index].worker_id,
            job: &job,
            attempt: job.attempts + 1,
        });
        let limit = self.config.output_limit;
        if let Some(run) = self.slots[index].run.as_mut() {
            // The timeout counts from here, when the command starts: not from the
            // claim, so neither a slow round trip, a stopped
            // worker nor a wait in the slot's queue (claimed ahead) eats into it.
            run.deadline = stopping::local_deadline(Instant::now(), &job);
            run.output.limit = limit;
        }
        if let Some(execution) = self.runners[index].run(&job, limit) {
            self.ended_at_once.push((index, execution));
        }
    }

    /// Another worker owns this job now: stop our copy of it at once.
    pub(super) fn lose(&mut self, lease: &Lease) {
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            slot.queued.retain(|j| lease_of(j) != *lease);
            let Some(run) = slot.run.as_mut() else {
                continue;
            };
            if lease_of(&run.job) == *lease && !run.lost {
                log::warn(&format!(
                    "job {}: lease lost (another worker took it over); killing this run",
                    lease.job_id
                ));
                run.lost = true;
                runner.terminate(run, KILL_GRACE);
            }
        }
    }

    /// Moves jobs claimed ahead to idle slots (see [`Slots::rebalance`]); the store
    /// learns of the moves with the next commit.
    pub(super) fn rebalance(&mut self) {
        let now = Instant::now();
        for (index, job) in self.slots.rebalance(now) {
            let thief = self.slots[index].worker_id.clone();
            self.outbox.reassign(lease_of(&job), thief, now);
            self.hand_over(index, job);
        }
    }

    /// Gives back jobs claimed ahead for slots whose current job runs long.
    pub(super) fn release_stale_prefetches(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            if self.slots[index].holds_stale_prefetch(now) {
                self.release_queued(index);
            }
        }
    }

    /// Gives back the jobs claimed ahead for slot `index` with the next commit.
    pub(super) fn release_queued(&mut self, index: usize) {
        let now = Instant::now();
        for released in self.slots[index].release_queued() {
            self.outbox.record(released, now);
        }
    }

    pub(super) fn escalate_kills(&mut self, now: Instant) {
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            if let Some(run) = slot.run.as_mut() {
                runner.escalate(run, now);
            }
        }
    }
}
