//! The supervisor stopping runs on its own: at their deadline, or because a user
//! cancelled their job (`ExchangeReply::cancel`). Either way the attempt's process
//! group gets SIGTERM, then SIGKILL after `kill-grace` (the forced-stop escalation,
//! [`SlotRunner::terminate`]), and the reason, kept in the run, decides its outcome
//! ([`crate::worker::stopping::decide`]). A cancelled job claimed ahead but not started is finished
//! `cancelled` without running.
//!
//! [`SlotRunner::terminate`]: crate::worker::slot_runner::SlotRunner::terminate

use std::time::Instant;

use super::Supervisor;
use crate::job::{AttemptOutcome, Outcome, after_attempt};
use crate::log;
use crate::store::{AttemptFacts, Finished, Lease};
use crate::worker::slots::{Run, lease_of};
use crate::worker::stopping::Ending;

/// When `run` is due to be stopped for its deadline, if it has one and is not
/// already being stopped.
pub(super) fn deadline_due(run: &Run) -> Option<Instant> {
    let stoppable = !run.lost && run.ending.is_none();
    run.deadline.filter(|_| stoppable).map(|d| d.at)
}

impl Supervisor {
    /// Stops every run whose deadline has passed.
    pub(super) fn enforce_deadlines(&mut self, now: Instant) {
        let grace = self.config.kill_grace;
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            let Some(run) = slot.run.as_mut() else {
                continue;
            };
            let Some(deadline) = run.deadline.filter(|_| deadline_due(run).is_some()) else {
                continue;
            };
            if now < deadline.at {
                continue;
            }
            log::info(&format!(
                "job {}: timed out after {}; stopping it",
                run.job.id,
                crate::duration::human(deadline.after)
            ));
            run.ending = Some(Ending::TimedOut {
                after: deadline.after,
            });
            runner.terminate(run, grace);
        }
    }

    /// A user cancelled the job of `lease`: stop it if this process runs it, finish
    /// it at once if it is only claimed ahead here.
    pub(super) fn cancel(&mut self, lease: &Lease) {
        let grace = self.config.kill_grace;
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            if let Some(run) = slot.run.as_mut()
                && lease_of(&run.job) == *lease
                && !run.lost
                && Ending::Cancelled.overrides(run.ending)
            {
                log::info(&format!("job {}: cancelled; stopping it", lease.job_id));
                run.ending = Some(Ending::Cancelled);
                runner.terminate(run, grace);
            }
            let Some(position) = slot.queued.iter().position(|j| lease_of(j) == *lease) else {
                continue;
            };
            let Some(job) = slot.queued.remove(position) else {
                continue;
            };
            let mut transition = after_attempt(
                job.attempts,
                job.max_retries,
                job.interruptions,
                &Outcome::Cancelled,
                &self.config.backoff,
            );
            // It never ran: no attempt is used up.
            transition.attempts = job.attempts;
            log::info(&format!("job {}: cancelled before it started", job.id));
            self.summary.count(AttemptOutcome::Cancelled);
            self.outbox.record(
                Finished {
                    lease: lease.clone(),
                    worker_id: Some(slot.worker_id.clone()),
                    outcome: AttemptOutcome::Cancelled,
                    transition,
                    output_tail: None,
                    output: None,
                    facts: AttemptFacts::default(),
                    only_if_expired: false,
                },
                Instant::now(),
            );
        }
    }
}
