//! Crash recovery: puts jobs whose worker is gone back to `pending`.
//!
//! Two signals say a worker is gone. A lease that expired by the store's clock works
//! across machines (default worst case: lease timeout plus one recovery pass). On the
//! worker's own host we can do better: if its process is no longer running (checked
//! with the process start time, so a reused pid cannot fool us) its jobs are recovered
//! at once. Before a job is released, what is left of its attempt on this host is
//! killed. Every release is fenced by the lease token, and expiry-based releases also
//! re-check the expiry inside the store, so a worker that renewed in the meantime
//! keeps its job. Interruptions do not use up attempts; see [`crate::job`]. A job a
//! user cancelled while it ran is not run again: it ends `cancelled`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::job::{AttemptOutcome, Outcome, Transition, after_interruption};
use crate::store::RunningJob;
use crate::store::{AttemptFacts, Exchange, Finished, Result, Store, WorkerState};
use crate::worker::platform;
use crate::worker::spool::Spool;

/// Recovers what can be recovered now; returns the ids of the released jobs.
/// `expired_too` is false while this process has only just reconnected after a store
/// outage, so live workers get one lease period to renew before being judged.
pub fn recover(
    store: &mut dyn Store,
    host: &str,
    spool: &Spool,
    expired_too: bool,
) -> Result<Vec<String>> {
    let mut lost_workers = BTreeSet::new();
    for worker in store.workers(false)? {
        if worker.info.host == host && !platform::is_alive(worker.info.pid, worker.info.pid_start) {
            lost_workers.insert(worker.info.id);
        }
    }
    let mut finished = Vec::new();
    for job in store.running_jobs()? {
        let worker = job.worker.as_ref();
        let local = worker.is_some_and(|w| w.host == host);
        let dead_here = worker.is_some_and(|w| local && !platform::is_alive(w.pid, w.pid_start));
        if !(dead_here || expired_too && job.lease_expired) {
            continue;
        }
        let worker_name = worker.map_or("unknown", |w| w.id.as_str());
        let reason = if dead_here {
            lost_workers.insert(worker_name.to_owned());
            format!("worker {worker_name} died")
        } else {
            format!("lease expired: worker {worker_name} stopped heartbeating")
        };
        if let Some(w) = worker.filter(|_| local) {
            spool.kill_leftovers(&w.id, &job.lease.job_id, job.lease.token);
        }
        let (outcome, transition) = settle(&job, &reason);
        finished.push(Finished {
            transition,
            worker_id: worker.map(|w| w.id.clone()),
            outcome,
            output_tail: None,
            output: None,
            facts: AttemptFacts::default(),
            only_if_expired: !dead_here,
            lease: job.lease,
        });
    }
    let mut released = Vec::new();
    if !finished.is_empty() {
        let reply = store.exchange(&Exchange {
            finished: &finished,
            lease_timeout: Duration::ZERO,
            ..Exchange::default()
        })?;
        for f in &finished {
            if !reply.rejected.contains(&f.lease) {
                crate::log::info(&format!(
                    "recovered job {}: {}",
                    f.lease.job_id,
                    f.transition.last_error.as_deref().unwrap_or("interrupted")
                ));
                released.push(f.lease.job_id.clone());
            }
        }
    }
    if !lost_workers.is_empty() {
        let ids: Vec<String> = lost_workers.into_iter().collect();
        store.end_workers(&ids, WorkerState::Lost)?;
    }
    Ok(released)
}

/// How the attempt of a job whose worker is gone ends: interrupted (run again), or
/// cancelled if a user cancelled it meanwhile.
fn settle(job: &RunningJob, reason: &str) -> (AttemptOutcome, Transition) {
    if !job.cancel_requested {
        let transition = after_interruption(job.attempts, job.interruptions, reason);
        return (AttemptOutcome::Interrupted, transition);
    }
    let transition = Transition {
        state: crate::job::JobState::Cancelled,
        attempts: job.attempts,
        interruptions: job.interruptions,
        run_after: Duration::ZERO,
        keeps_place: false,
        exit_code: None,
        last_error: Some(format!("cancelled; {reason}")),
    };
    (AttemptOutcome::of(&Outcome::Cancelled), transition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobState;
    use crate::store::Lease;

    fn running(cancel_requested: bool) -> RunningJob {
        RunningJob {
            lease: Lease {
                job_id: "j".into(),
                token: 3,
            },
            attempts: 1,
            interruptions: 0,
            worker: None,
            lease_expired: true,
            cancel_requested,
        }
    }

    #[test]
    fn a_job_of_a_dead_worker_runs_again_unless_it_was_cancelled() {
        let (outcome, next) = settle(&running(false), "worker w died");
        assert_eq!(
            (outcome, next.state),
            (AttemptOutcome::Interrupted, JobState::Pending)
        );
        let (outcome, next) = settle(&running(true), "worker w died");
        assert_eq!(
            (outcome, next.state),
            (AttemptOutcome::Cancelled, JobState::Cancelled)
        );
        assert_eq!(next.attempts, 1);
        assert_eq!(next.last_error.as_deref(), Some("cancelled; worker w died"));
    }
}
