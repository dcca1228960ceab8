//! `queuectl bench` drives the real worker code; these check what it reports and that
//! it leaves a store that is already in use alone.

use serde_json::Value;

use crate::common::assert_usage_error;

backend_test!(a_noop_bench_reports_every_job_completed, |env| {
    let report = env.json(&["bench", "--mode", "noop", "--jobs", "300", "--workers", "4"]);
    assert_eq!(report["mode"], "noop");
    assert_eq!(report["jobs"], 300);
    assert_eq!(report["workers"], 4);
    assert!(
        report["hardware"]["cores"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );
    let results = &report["results"];
    assert_eq!(results["jobs completed (jobs)"], 300.0, "{report}");
    assert!(
        results["throughput (jobs/s)"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    assert_eq!(
        env.json(&["status"])["completed"],
        300,
        "the jobs ran in --db"
    );
});

backend_test!(a_store_with_jobs_is_refused_and_left_alone, |env| {
    let id = env.enqueue("echo mine");
    let before = env.snapshot();
    for mode in ["noop", "shell", "latency"] {
        let out = env.run(&["bench", "--mode", mode, "--jobs", "10"]);
        assert_usage_error(&out, "1 job(s)");
        assert_eq!(
            env.snapshot(),
            before,
            "bench --mode {mode} changed the store"
        );
    }
    assert_eq!(env.state(&id), "pending");
    let status: Value = env.json(&["status"]);
    assert_eq!(status["total"], 1);
});
