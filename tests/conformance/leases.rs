//! Fencing and leases: a write about a run counts only while its lease is the job's
//! current one, and an expired lease lets recovery take the job back.

use std::time::Duration;

use queuectl::job::AttemptOutcome;
use queuectl::job::{JobState, after_forced_stop, after_interruption};
use queuectl::store::Finished;

use crate::{
    LONG_LEASE, claim, conformance_test, enqueue, finished, job, lease_of, renew, report,
    succeeded, wait_until,
};

conformance_test!(
    a_result_carrying_a_stale_lease_token_changes_nothing_and_is_rejected,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let first_run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        // `worker stop --force` on w1's process: the job goes back to pending ...
        let stop = after_forced_stop(first_run.attempts, first_run.interruptions, "forced stop");
        let reply = report(
            &mut *store,
            &[finished(&first_run, AttemptOutcome::Interrupted, stop)],
        );
        assert!(reply.rejected.is_empty());
        // ... and w2 runs it under a newer lease.
        let second_run = claim(&mut *store, "w2", LONG_LEASE).expect("the job again");
        assert!(second_run.lease_token > first_run.lease_token);

        let job_before = job(&mut *store, "job");
        let attempts_before = store.attempts("job").expect("attempts");
        let reply = report(&mut *store, &[succeeded(&first_run)]);
        assert_eq!(reply.rejected, [lease_of(&first_run)]);
        assert_eq!(job(&mut *store, "job"), job_before);
        assert_eq!(store.attempts("job").expect("attempts"), attempts_before);

        let reply = report(&mut *store, &[succeeded(&second_run)]);
        assert!(reply.rejected.is_empty());
        assert_eq!(job(&mut *store, "job").state, JobState::Completed);
    }
);

conformance_test!(
    renewing_a_lease_another_worker_now_holds_comes_back_lost,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let first_run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let stop = after_forced_stop(first_run.attempts, first_run.interruptions, "forced stop");
        report(
            &mut *store,
            &[finished(&first_run, AttemptOutcome::Interrupted, stop)],
        );
        let second_run = claim(&mut *store, "w2", LONG_LEASE).expect("the job again");

        let old = lease_of(&first_run);
        let current = lease_of(&second_run);
        assert_eq!(renew(&mut *store, &[old.clone(), current]), [old]);
        assert_eq!(job(&mut *store, "job").worker_id.as_deref(), Some("w2"));
    }
);

conformance_test!(a_run_reported_twice_is_recorded_once, |stores| {
    let mut store = stores.open();
    enqueue(&mut *store, &["job"]);
    let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
    let done = succeeded(&run);
    let reply = report(&mut *store, &[done.clone(), done.clone()]);
    assert_eq!(reply.rejected, [lease_of(&run)]);
    let reply = report(&mut *store, &[done]);
    assert_eq!(reply.rejected, [lease_of(&run)]);
    let after = job(&mut *store, "job");
    assert_eq!((after.state, after.attempts), (JobState::Completed, 1));
    assert_eq!(store.attempts("job").expect("attempts").len(), 1);
});

/// What recovery reports for a run whose lease ran out (see `worker::recovery`).
fn expired_run(run: &queuectl::job::Job) -> Finished {
    let transition = after_interruption(run.attempts, run.interruptions, "lease expired");
    Finished {
        only_if_expired: true,
        ..finished(run, AttemptOutcome::Interrupted, transition)
    }
}

conformance_test!(
    an_expired_lease_lets_recovery_return_the_job_to_pending,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let run = claim(&mut *store, "w1", Duration::from_millis(50)).expect("a job to claim");

        let mut recovery = stores.open();
        wait_until("the lease to expire", Duration::from_secs(5), || {
            let running = recovery.running_jobs().expect("running jobs");
            assert_eq!(running.len(), 1, "{running:?}");
            assert_eq!(running[0].lease, lease_of(&run));
            running[0].lease_expired
        });
        let reply = report(&mut *recovery, &[expired_run(&run)]);
        assert!(reply.rejected.is_empty());
        let recovered = job(&mut *recovery, "job");
        assert_eq!(
            (recovered.state, recovered.attempts, recovered.interruptions),
            (JobState::Pending, 0, 1)
        );
        assert_eq!(recovered.lease_expires_at, None);
        assert!(recovery.running_jobs().expect("running jobs").is_empty());

        // The old holder comes back: its result and its renewal both bounce.
        let reply = report(&mut *store, &[succeeded(&run)]);
        assert_eq!(reply.rejected, [lease_of(&run)]);
        assert_eq!(renew(&mut *store, &[lease_of(&run)]), [lease_of(&run)]);
        assert_eq!(job(&mut *store, "job"), recovered);
    }
);

conformance_test!(
    recovery_cannot_take_a_job_whose_lease_is_still_valid,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let running = store.running_jobs().expect("running jobs");
        assert_eq!(running.len(), 1);
        assert!(!running[0].lease_expired);

        let reply = report(&mut *stores.open(), &[expired_run(&run)]);
        assert_eq!(reply.rejected, [lease_of(&run)]);
        let still = job(&mut *store, "job");
        assert_eq!(
            (still.state, still.lease_token, still.interruptions),
            (JobState::Processing, run.lease_token, 0)
        );
        assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
    }
);

conformance_test!(
    reconcile_reports_the_claims_a_worker_holds_and_the_results_that_committed,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["done", "held", "other"]);
        // A round trip claims for w1 and w2, and the reply is lost.
        let done = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let held = claim(&mut *store, "w2", LONG_LEASE).expect("a job to claim");
        let other = claim(&mut *store, "w9", LONG_LEASE).expect("a job to claim");
        // w1's result commits; its reply is lost too.
        let mut result = succeeded(&done);
        result.facts.pid = Some(4242);
        assert!(report(&mut *store, &[result]).rejected.is_empty());

        let workers = ["w1".to_owned(), "w2".to_owned()];
        let never_sent = queuectl::store::Lease {
            job_id: held.id.clone(),
            token: held.lease_token,
        };
        let check = store
            .reconcile(&workers, &[lease_of(&done), never_sent])
            .expect("reconcile");
        let held_ids: Vec<&str> = check.held.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(held_ids, ["held"], "w9's job is not ours, w1's ended");
        assert_eq!(check.held[0].lease_token, held.lease_token);
        assert_eq!(check.held[0].worker_id.as_deref(), Some("w2"));
        assert_eq!(
            check.ended,
            [queuectl::store::EndedLease {
                lease: lease_of(&done),
                outcome: Some(AttemptOutcome::Succeeded),
                pid: Some(4242),
            }],
            "a job still processing under the lease did not end"
        );

        // Giving back the claim w2 never received: no attempt, no interruption.
        let release = finished(
            &held,
            AttemptOutcome::Released,
            queuectl::job::after_release(&held),
        );
        assert!(report(&mut *store, &[release]).rejected.is_empty());
        let back = job(&mut *store, "held");
        assert_eq!(
            (back.state, back.attempts, back.interruptions),
            (JobState::Pending, 0, 0)
        );
        assert!(store.attempts("held").expect("attempts").is_empty());
        let check = store
            .reconcile(&workers, &[lease_of(&held)])
            .expect("reconcile");
        assert!(check.held.is_empty());
        assert_eq!(check.ended.len(), 1);
        assert_eq!(
            check.ended[0].outcome, None,
            "a give-back leaves no attempt"
        );
        assert_eq!(job(&mut *store, "other").worker_id.as_deref(), Some("w9"));
        let _ = other;
    }
);
