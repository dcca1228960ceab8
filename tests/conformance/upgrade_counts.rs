//! Upgrade to schema version 6 (completed jobs counted through `completed_rollup`,
//! issue 13): a version-5 store opens migrated in place with its jobs intact, and
//! its completed jobs are counted exactly, those no attempt locates included.

use queuectl::job::JobState;

use crate::{Backend, LONG_LEASE, Raw, TestStore, claim, job, report, succeeded};

/// Makes the store a version-5 store, as the release before version 6 created it:
/// in q1, `done` (completed by its one attempt), `flaky` (completed on its second
/// attempt) and `bare` (completed, imported without attempts); `gone` (dead) and
/// `next` (pending) in q2.
fn build_version_5(stores: &TestStore, raw: &mut Raw) {
    match stores.backend() {
        Backend::Sqlite => raw.run(&format!(
            "{}\n{}\n{}\n{}\n{}\nPRAGMA application_id = {}; PRAGMA user_version = 5;",
            include_str!("../../src/store/sqlite/0001_init.sql"),
            include_str!("../../src/store/sqlite/0002_control.sql"),
            include_str!("../../src/store/sqlite/0003_schedule.sql"),
            include_str!("../../src/store/sqlite/0004_attempt_seq.sql"),
            include_str!("../../src/store/sqlite/0005_stats.sql"),
            0x5143_544C
        )),
        Backend::Postgres => raw.run(&format!(
            "{}\n{}\n{}\n{}\n{}\nINSERT INTO schema_version (version) VALUES (5);",
            include_str!("../../src/store/postgres/0001_init.sql"),
            include_str!("../../src/store/postgres/0002_control.sql"),
            include_str!("../../src/store/postgres/0003_schedule.sql"),
            include_str!("../../src/store/postgres/0004_attempt_seq.sql"),
            include_str!("../../src/store/postgres/0005_stats.sql")
        )),
    }
    raw.run(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, \
             updated_at, next_run_at, lease_token, worker_id, started_at, finished_at, \
             exit_code, last_error, queue) VALUES \
         ('done', 'true', '/', 'completed', 1, 3, 1000, 2000, 1000, 1, 'w1', 1500, 2000, \
             0, NULL, 'q1'), \
         ('flaky', 'true', '/', 'completed', 2, 3, 1100, 2600, 1100, 2, 'w1', 2500, 2600, \
             0, NULL, 'q1'), \
         ('bare', 'true', '/', 'completed', 1, 3, 1200, 2200, 1200, 1, 'w1', 2100, 2200, \
             0, NULL, 'q1'), \
         ('gone', 'exit 3', '/', 'dead', 1, 0, 1300, 2300, 1300, 1, 'w1', 2250, 2300, 3, \
             'exit code 3', 'q2'), \
         ('next', 'true', '/', 'pending', 0, 3, 1400, 1400, 1400, 0, NULL, NULL, NULL, \
             NULL, NULL, 'q2');
         INSERT INTO attempts (job_seq, job_id, lease_token, worker_id, started_at, \
             finished_at, outcome, exit_code) \
         SELECT seq, id, 1, 'w1', started_at, finished_at, 'succeeded', 0 FROM jobs \
             WHERE id = 'done' \
         UNION ALL SELECT seq, id, 1, 'w1', 2300, 2400, 'failed', 1 FROM jobs \
             WHERE id = 'flaky' \
         UNION ALL SELECT seq, id, 2, 'w1', 2500, 2600, 'succeeded', 0 FROM jobs \
             WHERE id = 'flaky' \
         UNION ALL SELECT seq, id, 1, 'w1', 2250, 2300, 'failed', 3 FROM jobs \
             WHERE id = 'gone';",
    );
}

fn migrates_version_5(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_5(&stores, &mut raw);
    drop(raw);

    let mut store = stores.try_open().expect("a version-5 store opens");
    let mut raw = stores.raw();
    let version = match backend {
        Backend::Sqlite => raw.number("PRAGMA user_version"),
        Backend::Postgres => raw.number("SELECT version FROM schema_version"),
    };
    assert_eq!(version, crate::upgrade::CURRENT_VERSION);
    // The migration counted the completed job no attempt locates; the others are
    // found through their attempts until the first read rolls them up.
    assert_eq!(
        raw.number("SELECT CAST(sum(jobs) AS BIGINT) FROM completed_rollup"),
        1
    );
    assert_eq!(raw.number("SELECT jobs_until FROM stats_rolled"), 0);
    assert_eq!(raw.number("SELECT count(*) FROM jobs"), 5);
    assert_eq!(raw.number("SELECT count(*) FROM attempts"), 4);

    let counts = store.counts().expect("counts");
    assert_eq!(counts.get(JobState::Completed), 3);
    assert_eq!(counts.get(JobState::Dead), 1);
    assert_eq!(counts.get(JobState::Pending), 1);
    assert!(
        raw.number("SELECT jobs_until FROM stats_rolled") > 0,
        "rolled"
    );
    assert_eq!(
        raw.number("SELECT CAST(sum(jobs) AS BIGINT) FROM completed_rollup"),
        3
    );
    assert_eq!(job(&mut *store, "flaky").state, JobState::Completed);
    assert_eq!(store.attempts("flaky").expect("attempts").len(), 2);

    // A job completed now is located by its attempt, not rolled up.
    let run = claim(&mut *store, "w2", LONG_LEASE).expect("the pending job");
    assert_eq!(run.id, "next");
    assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
    let queues = store.queues().expect("queues");
    let completed: Vec<(String, i64)> = queues
        .iter()
        .map(|q| (q.name.clone(), q.counts.get(JobState::Completed)))
        .collect();
    assert_eq!(completed, [("q1".to_owned(), 3), ("q2".to_owned(), 1)]);
    assert_eq!(
        raw.number("SELECT CAST(sum(jobs) AS BIGINT) FROM completed_rollup"),
        3
    );
}

#[test]
fn a_version_5_store_is_migrated_in_place_sqlite() {
    migrates_version_5(Backend::Sqlite);
}

#[test]
fn a_version_5_store_is_migrated_in_place_postgres() {
    migrates_version_5(Backend::Postgres);
}
