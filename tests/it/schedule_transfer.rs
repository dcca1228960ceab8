//! `export`/`import` carry every scheduling option (issue 11): priority, queue,
//! run_at, after, unique_key, env and cwd survive a round trip, and the imported
//! jobs keep behaving by them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Backend, Env};

/// Imports `text` into `target` from a file; asserts success.
fn import(target: &Env, text: &str) {
    let path = target.file("import.jsonl");
    std::fs::write(&path, text).unwrap();
    target.ok(&["import", path.to_str().unwrap()]);
}

/// A store with a job using every option, and one that waits for it.
fn populate(env: &Env) -> String {
    let dir = env.file("somewhere");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap().to_owned();
    env.ok(&[
        "enqueue",
        "--id",
        "a",
        "--priority",
        "5",
        "--queue",
        "q1",
        "--run-at",
        "2099-01-02T03:04:05Z",
        "--unique-key",
        "ua",
        "--env",
        "K=V",
        "--env",
        "SPACE=a b",
        "--cwd",
        &dir,
        "--command",
        "true",
    ]);
    env.ok(&["enqueue", "--id", "b", "--after", "a", "--command", "true"]);
    dir
}

fn check_fields(env: &Env, dir: &str) {
    let a = env.job("a");
    assert_eq!(a["priority"], 5, "{a}");
    assert_eq!(a["queue"], "q1", "{a}");
    assert_eq!(a["run_at"], "2099-01-02T03:04:05.000Z", "{a}");
    assert_eq!(a["unique_key"], "ua", "{a}");
    assert_eq!(a["env"], json!({"K": "V", "SPACE": "a b"}), "{a}");
    assert_eq!(a["cwd"], dir, "{a}");
    assert_eq!(a["after"], json!([]), "{a}");
    let b = env.job("b");
    assert_eq!(b["after"], json!(["a"]), "{b}");
    assert_eq!(b["state"], "pending", "{b}");
}

fn round_trip(source: &Env, target: &mut Env) {
    let dir = populate(source);
    let text = source.ok(&["export"]);
    for line in text.lines() {
        let job: Value = serde_json::from_str(line).expect("an export line is JSON");
        for field in [
            "priority",
            "queue",
            "run_at",
            "after",
            "unique_key",
            "env",
            "cwd",
        ] {
            assert!(job.get(field).is_some(), "{field} missing from {job}");
        }
    }
    import(target, &text);
    assert_eq!(
        target.ok(&["export"]),
        text,
        "the export is what was imported"
    );
    check_fields(target, &dir);
    // The unique key, the delay and the dependency still hold in the new store.
    assert_eq!(
        target.ok(&["enqueue", "--unique-key", "ua", "--command", "true"]),
        "Exists: a\n"
    );
    let ready = target.enqueue("true");
    target.spawn_workers(&[]);
    target.wait_state(&ready, "completed", Duration::from_secs(30));
    assert_eq!(target.state("a"), "pending");
    assert_eq!(target.state("b"), "pending");
}

backend_test!(export_and_import_carry_the_schedule, |env| {
    let mut target = Env::new(env.backend).expect("same backend");
    round_trip(&env, &mut target);
});

#[test]
fn schedule_moves_from_sqlite_to_postgres() {
    let Some(mut pg) = Env::new(Backend::Postgres) else {
        return;
    };
    round_trip(&Env::sqlite(), &mut pg);
}
