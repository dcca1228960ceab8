//! Batches in and out: `enqueue` and `import` insert all jobs or none, and `export`
//! reads jobs back in creation order so that an import reproduces them.

use std::ops::ControlFlow;

use queuectl::error::StoreError;
use queuectl::job::output::KeptOutput;
use queuectl::job::{JobState, NewJob};
use queuectl::store::{AttemptFacts, JobRecord, Store};

use crate::{
    LONG_LEASE, claim, conformance_test, enqueue, failed, new_job, no_backoff, report, succeeded,
};

fn job_ids(store: &mut dyn Store) -> Vec<String> {
    let jobs = store.list(None, None).expect("list");
    jobs.into_iter().map(|job| job.id).collect()
}

fn export_all(store: &mut dyn Store) -> Vec<JobRecord> {
    let mut records = Vec::new();
    store
        .export(None, &mut |record| {
            records.push(record);
            ControlFlow::Continue(())
        })
        .expect("export");
    records
}

fn assert_duplicate<T: std::fmt::Debug>(result: Result<T, StoreError>, id: &str) {
    assert!(
        matches!(result, Err(StoreError::DuplicateId(ref dup)) if dup == id),
        "expected DuplicateId({id}), got {result:?}"
    );
}

conformance_test!(
    enqueue_refuses_a_whole_batch_with_a_duplicate_id,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["taken"]);

        let clashes_with_stored: Vec<NewJob> = ["new-1", "taken", "new-2"].map(new_job).into();
        assert_duplicate(store.enqueue(&clashes_with_stored), "taken");
        assert_eq!(job_ids(&mut *store), ["taken"]);

        let clashes_within: Vec<NewJob> = ["twice", "other", "twice"].map(new_job).into();
        assert_duplicate(store.enqueue(&clashes_within), "twice");
        assert_eq!(job_ids(&mut *store), ["taken"]);
    }
);

conformance_test!(import_refuses_a_whole_batch_with_a_duplicate_id, |stores| {
    let mut source = stores.open();
    enqueue(&mut *source, &["taken"]);
    let taken = export_all(&mut *source);
    let renamed = |id: &str| {
        let mut record = taken[0].clone();
        record.job.id = id.to_owned();
        record
    };

    let target = stores.another();
    let mut store = target.open();
    store.import(&taken).expect("import");
    let clashes_with_stored = [renamed("new-1"), taken[0].clone(), renamed("new-2")];
    assert_duplicate(store.import(&clashes_with_stored), "taken");
    assert_eq!(job_ids(&mut *store), ["taken"]);

    let clashes_within = [renamed("twice"), renamed("other"), renamed("twice")];
    assert_duplicate(store.import(&clashes_within), "twice");
    assert_eq!(job_ids(&mut *store), ["taken"]);
});

/// A store with a job that ran three times (two failures with an output tail only,
/// then a success with its output and process facts), a dead one and a pending one with a timeout, created in
/// an order their ids do not sort in.
fn populate(store: &mut dyn Store) {
    store
        .enqueue(&[NewJob {
            max_retries: Some(5),
            ..new_job("zeta")
        }])
        .expect("enqueue");
    for _ in 0..2 {
        let run = claim(store, "w1", LONG_LEASE).expect("zeta");
        // Only a tail, as a worker from before kept output in the store reported.
        let mut failure = failed(&run, &no_backoff());
        failure.output_tail = Some("oops\n".into());
        assert!(report(store, &[failure]).rejected.is_empty());
    }
    let run = claim(store, "w2", LONG_LEASE).expect("zeta");
    let mut success = succeeded(&run);
    success.output_tail = Some("done\n".into());
    success.output = Some(KeptOutput {
        bytes: b"done\n".to_vec(),
        total: 5,
    });
    success.facts = AttemptFacts {
        host: Some("box".into()),
        pid: Some(77),
        signal: None,
        max_rss_kb: Some(2048),
        cpu_ms: Some(12),
    };
    assert!(report(store, &[success]).rejected.is_empty());

    store
        .enqueue(&[
            NewJob {
                max_retries: Some(0),
                ..new_job("alpha")
            },
            NewJob {
                timeout_ms: Some(7_000),
                ..new_job("mid")
            },
        ])
        .expect("enqueue");
    let run = claim(store, "w1", LONG_LEASE).expect("alpha");
    assert_eq!(run.id, "alpha");
    assert!(
        report(store, &[failed(&run, &no_backoff())])
            .rejected
            .is_empty()
    );
}

conformance_test!(
    export_emits_jobs_in_creation_order_with_attempts_by_lease_token,
    |stores| {
        let mut store = stores.open();
        populate(&mut *store);
        let records = export_all(&mut *store);

        let shape: Vec<(&str, JobState, Vec<i64>)> = records
            .iter()
            .map(|r| {
                let tokens = r.attempts.iter().map(|a| a.lease_token).collect();
                (r.job.id.as_str(), r.job.state, tokens)
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("zeta", JobState::Completed, vec![1, 2, 3]),
                ("alpha", JobState::Dead, vec![1]),
                ("mid", JobState::Pending, vec![]),
            ]
        );
        let zeta_workers: Vec<Option<&str>> = records[0]
            .attempts
            .iter()
            .map(|a| a.worker_id.as_deref())
            .collect();
        assert_eq!(zeta_workers, [Some("w1"), Some("w1"), Some("w2")]);
    }
);

conformance_test!(an_import_of_an_export_exports_back_equal, |stores| {
    let mut source = stores.open();
    populate(&mut *source);
    let exported = export_all(&mut *source);

    // Hand the attempts over newest first: the store orders them, not the importer.
    let mut shuffled = exported.clone();
    for record in &mut shuffled {
        record.attempts.reverse();
    }
    let target = stores.another();
    let mut store = target.open();
    store.import(&shuffled).expect("import");
    assert_eq!(export_all(&mut *store), exported);
    let kept = store.output("zeta", 3, 0).expect("output");
    assert_eq!(kept.pieces, [(0, b"done\n".to_vec())]);
    // An attempt exported with only its tail keeps that tail as its output.
    let tail_only = store.output("zeta", 1, 0).expect("output");
    assert_eq!(
        (tail_only.pieces, tail_only.total),
        (vec![(0, b"oops\n".to_vec())], 5)
    );
});
