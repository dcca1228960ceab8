//! What a store keeps of a run besides its state: output shipped while it runs
//! (fenced by the lease, its middle dropped past the limit), the kept output and facts
//! of a finished attempt, and the timeout that becomes a deadline at claim.

use queuectl::error::StoreError;
use queuectl::job::output::KeptOutput;
use queuectl::job::{Job, NewJob};
use queuectl::store::{AttemptFacts, Exchange, Lease, OutputChunk, OutputRead, Store};

use crate::{
    LONG_LEASE, claim, conformance_test, enqueue, exchange, job, lease_of, new_job, report,
    succeeded,
};

/// New output of the run under `lease`, with nothing to drop.
fn chunk(lease: &Lease, offset: u64, data: &[u8]) -> OutputChunk {
    OutputChunk {
        lease: lease.clone(),
        offset,
        data: data.to_vec(),
        keep_head: 0,
        drop_before: 0,
    }
}

fn ship(store: &mut dyn Store, chunks: &[OutputChunk]) {
    exchange(
        store,
        &Exchange {
            output: chunks,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    );
}

fn read(store: &mut dyn Store, run: &Job, from: u64) -> OutputRead {
    store
        .output(&run.id, run.lease_token, from)
        .expect("read output")
}

fn pieces(read: &OutputRead) -> Vec<(u64, &[u8])> {
    read.pieces
        .iter()
        .map(|(at, bytes)| (*at, bytes.as_slice()))
        .collect()
}

conformance_test!(
    output_shipped_while_running_is_fenced_by_the_lease,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let nobodys = Lease {
            job_id: run.id.clone(),
            token: run.lease_token + 1,
        };
        ship(
            &mut *store,
            &[
                chunk(&lease_of(&run), 0, b"hello\n"),
                chunk(&nobodys, 0, b"forged\n"),
            ],
        );
        let running = read(&mut *stores.open(), &run, 0);
        assert!(!running.finished);
        assert_eq!(pieces(&running), [(0, &b"hello\n"[..])]);
        let forged = store.output(&run.id, nobodys.token, 0).expect("read");
        assert!(forged.pieces.is_empty() && !forged.finished, "{forged:?}");

        assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
        ship(&mut *store, &[chunk(&lease_of(&run), 6, b"too late\n")]);
        assert_eq!(stores.raw().number("SELECT count(*) FROM output_chunks"), 0);
        assert!(matches!(
            store.output("nope", 1, 0),
            Err(StoreError::NotFound(_))
        ));
    }
);

conformance_test!(
    past_the_limit_the_middle_is_dropped_and_reads_show_the_gap,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job"]);
        let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let lease = lease_of(&run);
        for (at, data) in [(0, b"aaaa"), (4, b"bbbb"), (8, b"cccc"), (12, b"dddd")] {
            ship(&mut *store, &[chunk(&lease, at, data)]);
        }
        assert_eq!(read(&mut *store, &run, 0).pieces.len(), 4);
        // Past a limit of 8: keep the first 4 bytes and the newest.
        let newest = OutputChunk {
            keep_head: 4,
            drop_before: 16,
            ..chunk(&lease, 16, b"eeee")
        };
        ship(&mut *store, &[newest]);
        let all = read(&mut *store, &run, 0);
        assert_eq!(pieces(&all), [(0, &b"aaaa"[..]), (16, &b"eeee"[..])]);
        let mid_first = read(&mut *store, &run, 2);
        assert_eq!(pieces(&mid_first), [(2, &b"aa"[..]), (16, &b"eeee"[..])]);
        let in_gap = read(&mut *store, &run, 9);
        assert_eq!(pieces(&in_gap), [(16, &b"eeee"[..])]);
        let mid_last = read(&mut *store, &run, 17);
        assert_eq!(pieces(&mid_last), [(17, &b"eee"[..])]);
        assert!(read(&mut *store, &run, 20).pieces.is_empty());
    }
);

conformance_test!(
    a_finished_attempt_keeps_its_output_and_facts_exactly,
    |stores| {
        let mut store = stores.open();
        enqueue(&mut *store, &["job", "silent"]);
        let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        ship(&mut *store, &[chunk(&lease_of(&run), 0, b"partial")]);
        // Not UTF-8, with an escape sequence and the omission line of a long run.
        let bytes = b"head \xff\xfe\x1b[31m\n[... 10 bytes omitted ...]\ntail\n".to_vec();
        let facts = AttemptFacts {
            host: Some("box-2".into()),
            pid: Some(4242),
            signal: Some(9),
            max_rss_kb: Some(10_240),
            cpu_ms: Some(1500),
        };
        let mut done = succeeded(&run);
        done.output = Some(KeptOutput {
            bytes: bytes.clone(),
            total: 5000,
        });
        done.facts = facts.clone();
        assert!(report(&mut *store, &[done]).rejected.is_empty());

        let attempts = store.attempts("job").expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].facts, facts);
        assert_eq!(attempts[0].output_total, Some(5000));
        let kept = read(&mut *stores.open(), &run, 0);
        assert!(kept.finished);
        assert_eq!(kept.total, 5000);
        assert_eq!(pieces(&kept), [(0, bytes.as_slice())]);
        let rest = read(&mut *store, &run, 5);
        assert_eq!(pieces(&rest), [(5, &bytes[5..])]);
        assert_eq!(stores.raw().number("SELECT count(*) FROM output_chunks"), 0);

        let quiet = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
        let mut done = succeeded(&quiet);
        done.output = Some(KeptOutput::default());
        report(&mut *store, &[done]);
        let nothing = read(&mut *store, &quiet, 0);
        assert_eq!((nothing.finished, nothing.total), (true, 0));
        assert!(nothing.pieces.is_empty());
        assert_eq!(
            store.attempts("silent").expect("attempts")[0].output_total,
            Some(0)
        );
    }
);

conformance_test!(the_claim_turns_the_jobs_timeout_into_a_deadline, |stores| {
    let mut store = stores.open();
    let timed = NewJob {
        timeout_ms: Some(30_000),
        ..new_job("timed")
    };
    store
        .enqueue(&[timed, new_job("unlimited")])
        .expect("enqueue");
    assert_eq!(job(&mut *store, "timed").timeout_ms, Some(30_000));
    assert_eq!(job(&mut *store, "timed").deadline_at, None);

    let run = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
    let started = run.started_at.expect("a claimed job has started");
    assert_eq!(run.deadline_at, Some(started + 30_000));
    assert_eq!(
        job(&mut *store, "timed").deadline_at,
        Some(started + 30_000)
    );
    let unlimited = claim(&mut *store, "w1", LONG_LEASE).expect("a job to claim");
    assert_eq!((unlimited.timeout_ms, unlimited.deadline_at), (None, None));

    report(&mut *store, &[succeeded(&run)]);
    assert_eq!(job(&mut *store, "timed").deadline_at, None);
});

conformance_test!(enqueue_gives_jobs_the_stored_job_timeout, |stores| {
    let mut store = stores.open();
    enqueue(&mut *store, &["before"]);
    store.set_setting("job-timeout", "90").expect("set");
    let own = NewJob {
        timeout_ms: Some(5_000),
        ..new_job("own")
    };
    store.enqueue(&[new_job("after"), own]).expect("enqueue");
    assert_eq!(job(&mut *store, "before").timeout_ms, None);
    assert_eq!(job(&mut *store, "after").timeout_ms, Some(90_000));
    assert_eq!(job(&mut *store, "own").timeout_ms, Some(5_000));
});
