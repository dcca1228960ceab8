//! PostgreSQL replies lost at `COMMIT` (issue #15, defect 10): a proxy between the
//! worker and the server forwards the worker's `COMMIT` and cuts the connection
//! before the reply comes back, so the transaction committed but the worker never
//! learned it. After reconnecting the worker reconciles (`worker::reconcile`): a
//! claim it never received goes back to `pending` at once (not after its lease
//! expires), and a result that committed is confirmed, not reported as "lease
//! taken over".

use std::time::Duration;

use crate::common::{Backend, CommitCutter, Env, wait_until};

/// Long enough that a stranded claim would sit out the test (and no heartbeat
/// commit comes between the test's cuts and the commits it means to cut).
const LEASE_TIMEOUT: &str = "120";
const HEARTBEAT: &str = "40";

#[test]
fn a_claim_and_a_result_whose_replies_were_lost_are_reconciled_at_once() {
    let Some(mut env) = Env::new(Backend::Postgres) else {
        return;
    };
    env.ok(&["config", "set", "lease-timeout", LEASE_TIMEOUT]);
    env.ok(&["config", "set", "heartbeat-interval", HEARTBEAT]);
    let proxy = CommitCutter::start(&env.db);
    let routed = proxy.route(&env.db);
    env.spawn_workers_with(&["--count", "1"], &[("QUEUECTL_DB", &routed)]);
    env.wait_live_workers(1, Duration::from_secs(20));
    // Registration and the first round trip (a heartbeat) have committed.
    wait_until(
        "the worker's first round trip",
        Duration::from_secs(20),
        || proxy.commits() >= 2,
    );

    let started = env.file("started");
    let go = env.file("go");
    // Cut the round trip whose claim returns this job (its command passes in the
    // reply's rows), not an idle poll the worker may make first.
    proxy.cut_commit_after(started.to_string_lossy().as_bytes());
    let id = env.enqueue(&format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        go.display()
    ));
    wait_until(
        "the claim's reply to be lost",
        Duration::from_secs(20),
        || proxy.cuts() == 1,
    );
    // Stranded, the job would wait for its 120 s lease; reconciled, it is given
    // back and claimed again within the first retries.
    wait_until("the job to start", Duration::from_secs(10), || {
        started.exists()
    });

    // Cut the round trip that records the result (its outcome is a parameter), not
    // one the worker may make first (a recovery pass, say).
    proxy.cut_commit_after(b"succeeded");
    std::fs::write(&go, "").expect("let the job end");
    wait_until(
        "the result's reply to be lost",
        Duration::from_secs(20),
        || proxy.cuts() == 2,
    );
    let job = env.wait_state(&id, "completed", Duration::from_secs(10));
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(
        job["interruptions"], 0,
        "a claim never received costs nothing: {job}"
    );
    // The store has the result before the worker has made sense of the lost reply.
    wait_until(
        "the worker to confirm its result",
        Duration::from_secs(10),
        || {
            env.read("worker-1.log")
                .contains("result was recorded before the store's reply was lost")
        },
    );
    let log = env.read("worker-1.log");
    assert!(
        log.contains("claimed by a round trip whose reply was lost; giving it back"),
        "{log}"
    );
    assert!(!log.contains("taken over"), "no false takeover: {log}");
}
