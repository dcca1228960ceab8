//! `queuectl bench` drives the real worker code; these check what it reports and that
//! it never touches a store that is already in use.

use serde_json::Value;

use crate::common::{Backend, assert_usage_error};

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
    assert_eq!(results["jobs_completed"], 300.0, "{report}");
    assert!(
        results["throughput_jobs_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{report}"
    );
    // The store was empty, so bench used it as given.
    assert_eq!(env.json(&["status"])["completed"], 300);
});

backend_test!(a_store_in_use_is_left_alone, |env| {
    let id = env.enqueue("echo mine");
    let before = env.snapshot();
    let files_before = store_dir_entries(&env);
    for mode in ["noop", "shell", "latency"] {
        let out = env.run(&["--json", "bench", "--mode", mode, "--jobs", "20"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "bench --mode {mode}: {stderr}");
        assert!(
            stderr.contains("instead"),
            "says where it measured: {stderr}"
        );
        assert!(
            !stderr.contains("could not delete"),
            "the scratch store is deleted: {stderr}"
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        let done = if mode == "latency" {
            "jobs"
        } else {
            "jobs_completed"
        };
        assert_eq!(report["results"][done], 20.0, "{report}");
        assert!(
            report["store"]
                .as_str()
                .unwrap_or_default()
                .contains("bench_"),
            "ran in the scratch store: {report}"
        );
        assert_eq!(
            env.snapshot(),
            before,
            "bench --mode {mode} changed the store"
        );
    }
    assert_eq!(env.state(&id), "pending");
    // The scratch stores are gone again.
    assert_eq!(store_dir_entries(&env), files_before);
});

/// What is in the directory of a SQLite store (PostgreSQL: nothing to look at).
fn store_dir_entries(env: &crate::common::Env) -> Vec<String> {
    if env.backend != Backend::Sqlite {
        return Vec::new();
    }
    let mut names: Vec<String> = std::fs::read_dir(env.path().join("home"))
        .expect("the store's directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        // The store's own WAL files come and go; a scratch store's must not stay.
        .filter(|name| name != "queue.db-shm" && name != "queue.db-wal")
        .collect();
    names.sort();
    names
}

backend_test!(in_place_measures_inside_a_store_in_use, |env| {
    let id = env.enqueue("echo mine");
    let report = env.json(&["bench", "--mode", "noop", "--jobs", "20", "--in-place"]);
    // bench's workers took the store's own job too (noop: completed, not run).
    assert_eq!(report["results"]["jobs_completed"], 21.0, "{report}");
    assert_eq!(env.state(&id), "completed");
    assert_eq!(env.json(&["status"])["completed"], 21);
});

#[test]
fn in_place_needs_a_store_named_with_db() {
    let env = crate::common::Env::sqlite();
    let out = env
        .cmd(&["bench", "--in-place", "--jobs", "5"])
        .env_remove("QUEUECTL_DB")
        .output()
        .expect("run queuectl");
    assert_usage_error(&out, "--db");
}
