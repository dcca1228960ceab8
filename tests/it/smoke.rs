use std::time::Duration;

use crate::common::wait_until;

backend_test!(a_job_runs_to_completion, |env| {
    let id = env.enqueue("echo hello");
    assert_eq!(env.state(&id), "pending");
    let pid = env.spawn_workers(&["--burst"]);
    assert_eq!(env.wait_worker(pid, Duration::from_secs(30)), Some(0));
    let job = env.job(&id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["attempts"], 1);
    assert!(
        job["output_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("hello")
    );
    wait_until("nothing left", Duration::from_secs(5), || {
        env.json(&["status"])["pending"] == 0
    });
});
