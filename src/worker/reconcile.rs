//! What a worker makes of the store after a round trip whose outcome it never
//! learned: the reply was lost (a PostgreSQL connection cut at `COMMIT`), or the
//! commit failed in a way that may still have committed (an SQLite I/O error).
//!
//! Such a round trip may have claimed jobs the worker never received, and recorded
//! results the worker still holds in its outbox. Before its next round trip the
//! supervisor asks the store what it holds ([`Store::reconcile`]) and [`judge`]
//! decides:
//! - a job leased to one of the process's workers that no slot holds and no result
//!   names was claimed by the lost round trip: it is given back with the next round
//!   trip, as if never claimed (outcome `released`, [`after_release`]: no attempt
//!   and no interruption used, since it never ran), instead of waiting for its lease
//!   to expire;
//! - a result whose job ended under the result's own lease, with the attempt the
//!   worker sent (same outcome and pid), did commit: it leaves the outbox confirmed,
//!   instead of being sent again and rejected as "lease taken over".
//!
//! Anything else is left to the normal round trip (a result that did not commit is
//! sent again; a lease that was really taken over is reported as before).
//!
//! [`Store::reconcile`]: crate::store::Store::reconcile

use std::collections::HashSet;

use crate::job::{AttemptOutcome, after_release};
use crate::store::{AttemptFacts, Finished, Lease, LeaseCheck};
use crate::worker::slots::lease_of;

/// What to do after comparing the worker's books with the store's.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Claims the worker never received, to give back with the next round trip.
    pub release: Vec<Finished>,
    /// Results in the outbox that did commit.
    pub confirmed: Vec<Lease>,
}

/// Judges `check` against the leases the worker's slots hold (`held`) and the
/// results it has sent without a reply (`sent`); see the module docs.
pub fn judge(check: LeaseCheck, held: &HashSet<Lease>, sent: &[Finished]) -> Verdict {
    let mut verdict = Verdict::default();
    for job in check.held {
        let lease = lease_of(&job);
        if held.contains(&lease) || sent.iter().any(|f| f.lease == lease) {
            continue;
        }
        verdict.release.push(Finished {
            transition: after_release(&job),
            lease,
            worker_id: job.worker_id.clone(),
            outcome: AttemptOutcome::Released,
            output_tail: None,
            output: None,
            facts: AttemptFacts::default(),
            only_if_expired: false,
        });
    }
    for finished in sent {
        let Some(ended) = check.ended.iter().find(|e| e.lease == finished.lease) else {
            continue;
        };
        let ours = match finished.outcome {
            // A give-back leaves no attempt row: the job left `processing` under
            // this lease, which is all the release asked.
            AttemptOutcome::Released => true,
            outcome => ended.outcome == Some(outcome) && ended.pid == finished.facts.pid,
        };
        if ours {
            verdict.confirmed.push(finished.lease.clone());
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Job, JobState, NewJob, after_interruption};
    use crate::store::EndedLease;

    fn job(id: &str, token: i64) -> Job {
        Job {
            state: JobState::Processing,
            lease_token: token,
            worker_id: Some("w-1".into()),
            ..Job::pending(NewJob::new(id.into(), "true".into(), "/".into()), 0, 0)
        }
    }

    fn lease(id: &str, token: i64) -> Lease {
        Lease {
            job_id: id.into(),
            token,
        }
    }

    fn result(id: &str, token: i64, outcome: AttemptOutcome, pid: Option<i64>) -> Finished {
        Finished {
            lease: lease(id, token),
            worker_id: Some("w-1".into()),
            outcome,
            transition: after_interruption(0, 0, "test"),
            output_tail: None,
            output: None,
            facts: AttemptFacts {
                pid,
                ..AttemptFacts::default()
            },
            only_if_expired: false,
        }
    }

    #[test]
    fn a_claim_the_worker_never_received_is_given_back_without_using_anything() {
        let check = LeaseCheck {
            held: vec![job("lost", 3), job("running", 1)],
            ended: Vec::new(),
        };
        let held = HashSet::from([lease("running", 1)]);
        let verdict = judge(check, &held, &[]);
        assert_eq!(verdict.release.len(), 1);
        let release = &verdict.release[0];
        assert_eq!(release.lease, lease("lost", 3));
        assert_eq!(release.outcome, AttemptOutcome::Released);
        assert_eq!(release.transition.state, JobState::Pending);
        assert_eq!(
            (
                release.transition.attempts,
                release.transition.interruptions
            ),
            (0, 0)
        );
        assert!(verdict.confirmed.is_empty());
    }

    #[test]
    fn a_result_that_committed_is_confirmed_and_one_that_did_not_is_sent_again() {
        let sent = [
            result("done", 1, AttemptOutcome::Succeeded, Some(42)),
            result("pending", 1, AttemptOutcome::Succeeded, Some(43)),
        ];
        let check = LeaseCheck {
            // Not committed: still processing under its lease, and not given back.
            held: vec![job("pending", 1)],
            ended: vec![EndedLease {
                lease: lease("done", 1),
                outcome: Some(AttemptOutcome::Succeeded),
                pid: Some(42),
            }],
        };
        let verdict = judge(check, &HashSet::new(), &sent);
        assert_eq!(verdict.confirmed, [lease("done", 1)]);
        assert!(
            verdict.release.is_empty(),
            "a result in flight is no lost claim"
        );
    }

    #[test]
    fn a_lease_ended_by_someone_else_is_not_confirmed() {
        let sent = [result("job", 2, AttemptOutcome::Succeeded, Some(42))];
        let check = LeaseCheck {
            held: Vec::new(),
            // Recovery interrupted the run after its lease expired.
            ended: vec![EndedLease {
                lease: lease("job", 2),
                outcome: Some(AttemptOutcome::Interrupted),
                pid: None,
            }],
        };
        assert!(judge(check, &HashSet::new(), &sent).confirmed.is_empty());
    }

    #[test]
    fn a_give_back_that_committed_is_confirmed() {
        let sent = [result("ahead", 5, AttemptOutcome::Released, None)];
        let check = LeaseCheck {
            held: Vec::new(),
            ended: vec![EndedLease {
                lease: lease("ahead", 5),
                outcome: None,
                pid: None,
            }],
        };
        assert_eq!(
            judge(check, &HashSet::new(), &sent).confirmed,
            [lease("ahead", 5)]
        );
    }
}
