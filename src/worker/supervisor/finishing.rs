//! A run's end: the slot takes its next job (or the slots rebalance), and the
//! result is judged once (`stopping::decide`, `run_report::settle`), logged,
//! announced, and put in the outbox for the next round trip.
//!
//! Invariants: a run whose lease was lost records nothing (another worker owns the
//! job); the end is logged before the slot's next job starts, so a worker's log never
//! shows its next job starting before its last one ended.

use std::time::{Duration, Instant};

use super::Supervisor;
use crate::job::Outcome;
use crate::log;
use crate::store::{AttemptFacts, Finished};
use crate::worker::exec::Execution;
use crate::worker::notice::Notice;
use crate::worker::slots::lease_of;
use crate::worker::{run_report, stopping};

impl Supervisor {
    /// Slot `index` reports that its run ended: the slot takes its next job, and the
    /// result goes to the outbox (unless the lease was lost).
    pub(super) fn finish(&mut self, index: usize, execution: Execution) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let Some(run) = slot.end(Instant::now()) else {
            return;
        };
        let worker_id = slot.worker_id.clone();
        let next = slot.queued.pop_front();
        if matches!(execution.outcome, Outcome::Interrupted { .. }) {
            self.spool_space.suspect(Instant::now());
        }
        self.want_claim = true;
        let took = run.started.elapsed();
        if run.lost {
            self.summary.interrupted += 1;
        } else {
            self.record_end(worker_id, run, execution, took);
        }
        // After the end is logged, so a worker's log never shows its next job
        // starting before its last one ended.
        match next {
            Some(next) => self.start(index, next),
            None => self.rebalance(),
        }
    }

    /// Settles a run that ended under its lease: logs and announces the end, and
    /// puts the result in the outbox for the next round trip.
    fn record_end(
        &mut self,
        worker_id: String,
        run: crate::worker::slots::Run,
        execution: Execution,
        took: Duration,
    ) {
        let job = &run.job;
        let (forced, ended) = stopping::decide(run.forced, run.ending, execution.outcome);
        if run_report::reads_backoff(forced, &ended) {
            // backoff-base is read when a failure happens.
            self.refresh_config();
        }
        let (outcome, transition) = run_report::settle(job, forced, &ended, &self.config.backoff);
        self.summary.count(outcome);
        if self.options.log_jobs {
            let line = run_report::end_line(&worker_id, job, &ended, took, &transition);
            log::info(&line);
        }
        self.notify(&Notice::JobEnded {
            worker: &worker_id,
            job,
            attempt: job.attempts + 1,
            outcome,
            exit_code: transition.exit_code,
            error: transition.last_error.as_deref(),
            took,
            state: transition.state,
        });
        let finished = Finished {
            lease: lease_of(job),
            worker_id: Some(worker_id),
            outcome,
            transition,
            output_tail: execution.output_tail,
            output: execution.output,
            facts: AttemptFacts {
                host: Some(self.process.host.clone()),
                ..execution.facts
            },
            only_if_expired: false,
        };
        self.outbox.record(finished, Instant::now());
    }
}
