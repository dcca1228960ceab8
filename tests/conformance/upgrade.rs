//! Upgrades: stores made by the releases before schema versions 2, 3 and 4 open
//! with this one, migrated in place with every job and attempt intact; a store of a
//! newer release is refused and left exactly as it was.

use queuectl::error::StoreError;
use queuectl::job::{AttemptOutcome, JobState};
use queuectl::store::CleanRequest;

use crate::{
    Backend, LONG_LEASE, Raw, TestStore, claim, conformance_test, failed, job, no_backoff, report,
    succeeded,
};

/// The schema version this build writes.
pub(crate) const CURRENT_VERSION: i64 = 7;

/// The column of `attempts` that keys them by job, and the column of `jobs` it
/// holds: the job's `seq` on PostgreSQL, its row's `pos` on SQLite (version 7).
pub(crate) fn attempt_key(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => ("job_pos", "pos"),
        Backend::Postgres => ("job_seq", "seq"),
    }
}

/// Makes the store a version-1 store, as the release before version 2 created it,
/// holding a completed job with its attempt (output tail `hello`), a dead one whose
/// attempt printed nothing, and a pending one, all written with plain SQL.
fn build_version_1(stores: &TestStore, raw: &mut Raw) {
    match stores.backend() {
        Backend::Sqlite => raw.run(&format!(
            "{}\nPRAGMA application_id = {}; PRAGMA user_version = 1;",
            include_str!("../../src/store/sqlite/0001_init.sql"),
            0x5143_544C
        )),
        Backend::Postgres => raw.run(&format!(
            "{}\nINSERT INTO schema_version (version) VALUES (1);",
            include_str!("../../src/store/postgres/0001_init.sql")
        )),
    }
    raw.run(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, \
             updated_at, next_run_at, lease_token, worker_id, started_at, finished_at, \
             exit_code, last_error) VALUES \
         ('done', 'echo hello', '/tmp', 'completed', 1, 3, 1000, 2000, 1000, 1, 'w1', \
             1500, 2000, 0, NULL), \
         ('dead', 'exit 3', '/', 'dead', 1, 0, 1100, 2100, 1100, 1, 'w1', 1600, 2100, 3, \
             'exit code 3'), \
         ('waiting', 'true', '/', 'pending', 0, 3, 1200, 1200, 1200, 0, NULL, NULL, NULL, \
             NULL, NULL);
         INSERT INTO attempts (job_id, lease_token, worker_id, started_at, finished_at, \
             outcome, exit_code, error, output_tail) VALUES \
         ('done', 1, 'w1', 1500, 2000, 'succeeded', 0, NULL, 'hello\n'), \
         ('dead', 1, 'w1', 1600, 2100, 'failed', 3, 'exit code 3', NULL);",
    );
}

fn schema_version(stores: &TestStore, raw: &mut Raw) -> i64 {
    match stores.backend() {
        Backend::Sqlite => raw.number("PRAGMA user_version"),
        Backend::Postgres => raw.number("SELECT version FROM schema_version"),
    }
}

/// Whether `jobs` has a column only version 2 adds.
fn has_version_2_columns(stores: &TestStore, raw: &mut Raw) -> bool {
    let sql = match stores.backend() {
        Backend::Sqlite => {
            "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'timeout_ms'"
        }
        Backend::Postgres => {
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = \
             current_schema() AND table_name = 'jobs' AND column_name = 'timeout_ms'"
        }
    };
    raw.number(sql) == 1
}

fn migrates_in_place(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_1(&stores, &mut raw);
    assert!(!has_version_2_columns(&stores, &mut raw));
    drop(raw);

    let mut store = stores.try_open().expect("a version-1 store opens");
    let mut raw = stores.raw();
    assert_eq!(schema_version(&stores, &mut raw), CURRENT_VERSION);

    let done = job(&mut *store, "done");
    assert_eq!(
        (done.state, done.attempts, done.exit_code, done.created_at),
        (JobState::Completed, 1, Some(0), 1000)
    );
    assert_eq!((done.timeout_ms, done.cancel_requested), (None, false));
    assert_eq!(done.output_tail.as_deref(), Some("hello\n"));
    let dead = job(&mut *store, "dead");
    assert_eq!(
        (dead.state, dead.last_error.as_deref()),
        (JobState::Dead, Some("exit code 3"))
    );
    let attempts = store.attempts("done").expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded);
    assert_eq!(attempts[0].output_total, Some(6));
    let kept = store.output("done", 1, 0).expect("output");
    assert!(kept.finished);
    assert_eq!(kept.pieces, [(0, b"hello\n".to_vec())]);
    let silent = store.output("dead", 1, 0).expect("output");
    assert!(silent.finished && silent.pieces.is_empty());

    // And it works: the pending job runs, the dead one can be retried.
    let run = claim(&mut *store, "w2", LONG_LEASE).expect("the pending job");
    assert_eq!(run.id, "waiting");
    assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
    assert_eq!(job(&mut *store, "waiting").state, JobState::Completed);
    store.retry(Some(&["dead".to_owned()]), &[]).expect("retry");
    assert_eq!(job(&mut *store, "dead").state, JobState::Pending);
    assert_eq!(store.counts().expect("counts").get(JobState::Completed), 2);
}

#[test]
fn a_version_1_store_is_migrated_in_place_sqlite() {
    migrates_in_place(Backend::Sqlite);
}

#[test]
fn a_version_1_store_is_migrated_in_place_postgres() {
    migrates_in_place(Backend::Postgres);
}

fn refuses_newer(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_1(&stores, &mut raw);
    match backend {
        Backend::Sqlite => raw.run("PRAGMA user_version = 99"),
        Backend::Postgres => raw.run("UPDATE schema_version SET version = 99"),
    }
    drop(raw);

    let refused = stores.try_open().map(|_| ());
    assert!(
        matches!(
            refused,
            Err(StoreError::TooNew {
                found: 99,
                supported: CURRENT_VERSION
            })
        ),
        "{refused:?}"
    );
    let mut raw = stores.raw();
    assert_eq!(schema_version(&stores, &mut raw), 99);
    assert!(!has_version_2_columns(&stores, &mut raw));
    assert_eq!(raw.number("SELECT count(*) FROM jobs"), 3);
    assert_eq!(raw.number("SELECT count(*) FROM attempts"), 2);
}

#[test]
fn a_store_of_a_newer_release_is_refused_and_left_unchanged_sqlite() {
    refuses_newer(Backend::Sqlite);
}

#[test]
fn a_store_of_a_newer_release_is_refused_and_left_unchanged_postgres() {
    refuses_newer(Backend::Postgres);
}

conformance_test!(a_new_store_starts_at_the_current_version, |stores| {
    drop(stores.open());
    let mut raw = stores.raw();
    assert_eq!(schema_version(stores, &mut raw), CURRENT_VERSION);
    assert!(has_version_2_columns(stores, &mut raw));
});

/// Makes the store a version-2 store, as the release before version 3 (issue 11)
/// created it: a pending job, a failed one waiting out a long backoff, a completed
/// one, written with plain SQL.
fn build_version_2(stores: &TestStore, raw: &mut Raw) {
    match stores.backend() {
        Backend::Sqlite => raw.run(&format!(
            "{}\n{}\nPRAGMA application_id = {}; PRAGMA user_version = 2;",
            include_str!("../../src/store/sqlite/0001_init.sql"),
            include_str!("../../src/store/sqlite/0002_control.sql"),
            0x5143_544C
        )),
        Backend::Postgres => raw.run(&format!(
            "{}\n{}\nINSERT INTO schema_version (version) VALUES (2);",
            include_str!("../../src/store/postgres/0001_init.sql"),
            include_str!("../../src/store/postgres/0002_control.sql")
        )),
    }
    // The backoff ends in a day, by any clock.
    let later = queuectl_now_ms() + 86_400_000;
    raw.run(&format!(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, \
             updated_at, next_run_at, lease_token, timeout_ms) VALUES \
         ('first', 'true', '/', 'pending', 0, 3, 1000, 1000, 1000, 0, 30000), \
         ('backing-off', 'false', '/', 'failed', 1, 3, 1100, 1100, {later}, 1, NULL), \
         ('old', 'true', '/', 'completed', 1, 3, 900, 950, 900, 1, NULL);"
    ));
}

fn queuectl_now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn migrates_version_2(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_2(&stores, &mut raw);
    drop(raw);

    let mut store = stores.try_open().expect("a version-2 store opens");
    let mut raw = stores.raw();
    assert_eq!(schema_version(&stores, &mut raw), CURRENT_VERSION);
    let first = job(&mut *store, "first");
    assert_eq!(
        (
            first.priority,
            first.queue.as_str(),
            first.run_at,
            first.timeout_ms
        ),
        (0, "default", None, Some(30_000))
    );
    assert!(first.after.is_empty() && first.env.is_none() && first.unique_key.is_none());
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.get(JobState::Pending), counts.get(JobState::Failed)),
        (1, 1)
    );
    // The pending job runs; the failed one still waits out its backoff.
    let run = claim(&mut *store, "w1", LONG_LEASE).expect("the pending job");
    assert_eq!(run.id, "first");
    assert!(claim(&mut *store, "w1", LONG_LEASE).is_none());
    assert_eq!(job(&mut *store, "backing-off").state, JobState::Failed);
    assert_eq!(store.list(None, None).expect("list").len(), 3);
}

#[test]
fn a_version_2_store_is_migrated_in_place_sqlite() {
    migrates_version_2(Backend::Sqlite);
}

#[test]
fn a_version_2_store_is_migrated_in_place_postgres() {
    migrates_version_2(Backend::Postgres);
}

/// Makes the store a version-3 store, as the release before version 4 (attempts
/// keyed by job `seq`) created it, with jobs whose ids sort against their enqueue
/// order: `zulu` (first, pending after two failed attempts), `alpha` (completed on
/// its second attempt, with output and process facts), `mike` (dead after one
/// silent attempt), and one attempt row of a job that no longer exists.
fn build_version_3(stores: &TestStore, raw: &mut Raw) {
    match stores.backend() {
        Backend::Sqlite => raw.run(&format!(
            "{}\n{}\n{}\nPRAGMA application_id = {}; PRAGMA user_version = 3;",
            include_str!("../../src/store/sqlite/0001_init.sql"),
            include_str!("../../src/store/sqlite/0002_control.sql"),
            include_str!("../../src/store/sqlite/0003_schedule.sql"),
            0x5143_544C
        )),
        Backend::Postgres => raw.run(&format!(
            "{}\n{}\n{}\nINSERT INTO schema_version (version) VALUES (3);",
            include_str!("../../src/store/postgres/0001_init.sql"),
            include_str!("../../src/store/postgres/0002_control.sql"),
            include_str!("../../src/store/postgres/0003_schedule.sql")
        )),
    }
    raw.run(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, \
             updated_at, next_run_at, lease_token, worker_id, started_at, finished_at, \
             exit_code, last_error) VALUES \
         ('zulu', 'sh -c \"exit 1\"', '/', 'pending', 2, 5, 1000, 2300, 1000, 2, 'w1', \
             2200, 2300, 1, 'exit code 1'), \
         ('alpha', 'echo ok', '/', 'completed', 2, 3, 1100, 2500, 1100, 2, 'w2', 2400, \
             2500, 0, NULL), \
         ('mike', 'exit 3', '/', 'dead', 1, 0, 1200, 2600, 1200, 1, 'w1', 2550, 2600, 3, \
             'exit code 3');
         INSERT INTO attempts (job_id, lease_token, worker_id, started_at, finished_at, \
             outcome, exit_code, error, output_tail, output, output_total, host, pid) VALUES \
         ('alpha', 2, 'w2', 2400, 2500, 'succeeded', 0, NULL, 'ok\n', NULL, 3, 'h2', 42), \
         ('zulu', 1, 'w1', 2000, 2100, 'failed', 1, 'exit code 1', 'one\n', NULL, 4, 'h1', 7), \
         ('mike', 1, 'w1', 2550, 2600, 'failed', 3, 'exit code 3', NULL, NULL, NULL, 'h1', 9), \
         ('alpha', 1, 'w1', 2300, 2350, 'failed', 1, 'exit code 1', 'no\n', NULL, 3, 'h1', 8), \
         ('zulu', 2, 'w1', 2200, 2300, 'failed', 1, 'exit code 1', 'two\n', NULL, 4, 'h1', 11), \
         ('ghost', 1, 'w1', 500, 600, 'succeeded', 0, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    // Kept output as version 2 and later write it (the tail is all it printed).
    raw.run(match stores.backend() {
        Backend::Sqlite => "UPDATE attempts SET output = CAST(output_tail AS BLOB)",
        Backend::Postgres => "UPDATE attempts SET output = convert_to(output_tail, 'UTF8')",
    });
}

/// How many indexes `attempts` has, and how many of them are on `key`,
/// `lease_token` (`job_seq`: the version-4 key; SQLite's is `job_pos` from
/// version 7).
fn attempt_indexes(stores: &TestStore, raw: &mut Raw, key: &str) -> (i64, i64) {
    match stores.backend() {
        Backend::Sqlite => (
            raw.number("SELECT count(*) FROM pragma_index_list('attempts')"),
            raw.number(&format!(
                "SELECT count(*) FROM pragma_index_list('attempts') l \
                 WHERE (SELECT group_concat(name, ',') FROM (SELECT name \
                 FROM pragma_index_info(l.name) ORDER BY seqno)) = '{key},lease_token'"
            )),
        ),
        Backend::Postgres => (
            raw.number(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'attempts'",
            ),
            raw.number(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'attempts' AND indexdef LIKE '%(job_seq, lease_token)'",
            ),
        ),
    }
}

/// The tokens, outcomes and hosts of a job's attempts, oldest first.
fn history(store: &mut dyn queuectl::store::Store, id: &str) -> Vec<(i64, AttemptOutcome, String)> {
    let attempts = store.attempts(id).expect("attempts");
    attempts
        .into_iter()
        .map(|a| {
            let host = a.facts.host.unwrap_or_default();
            (a.lease_token, a.outcome, host)
        })
        .collect()
}

/// The kept output of attempt `token` of job `id`.
fn kept(store: &mut dyn queuectl::store::Store, id: &str, token: i64) -> Vec<u8> {
    let read = store.output(id, token, 0).expect("output");
    assert!(read.finished, "attempt {token} of {id} is finished");
    read.pieces
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect()
}

fn migrates_version_3(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_3(&stores, &mut raw);
    let (key, job_key) = attempt_key(backend);
    assert_eq!(attempt_indexes(&stores, &mut raw, key), (1, 0));
    drop(raw);

    let mut store = stores.try_open().expect("a version-3 store opens");
    let mut raw = stores.raw();
    assert_eq!(schema_version(&stores, &mut raw), CURRENT_VERSION);
    // One key, on (job_seq, lease_token) (SQLite: job_pos): the old (job_id,
    // lease_token) one is gone. The other index is version 5's `attempts_finished`
    // (stats), on finished_at (a BRIN index on PostgreSQL).
    assert_eq!(attempt_indexes(&stores, &mut raw, key), (2, 1));
    // Every attempt kept its job's key; the orphan's row is gone.
    assert_eq!(raw.number("SELECT count(*) FROM attempts"), 5);
    assert_eq!(
        raw.number(&format!(
            "SELECT count(*) FROM attempts a JOIN jobs j ON j.{job_key} = a.{key} \
             AND j.id = a.job_id"
        )),
        5
    );
    if backend == Backend::Sqlite {
        // Still a rowid table (new rows append to it).
        assert_eq!(raw.number("SELECT count(rowid) FROM attempts"), 5);
    }

    assert_eq!(
        history(&mut *store, "zulu"),
        [
            (1, AttemptOutcome::Failed, "h1".into()),
            (2, AttemptOutcome::Failed, "h1".into())
        ]
    );
    assert_eq!(
        history(&mut *store, "alpha"),
        [
            (1, AttemptOutcome::Failed, "h1".into()),
            (2, AttemptOutcome::Succeeded, "h2".into())
        ]
    );
    assert_eq!(
        history(&mut *store, "mike"),
        [(1, AttemptOutcome::Failed, "h1".into())]
    );
    let alpha = store.attempts("alpha").expect("attempts");
    assert_eq!(
        (
            alpha[1].facts.pid,
            alpha[1].output_total,
            alpha[1].finished_at
        ),
        (Some(42), Some(3), 2500)
    );
    assert!(store.attempts("ghost").expect("attempts").is_empty());
    assert_eq!(kept(&mut *store, "zulu", 1), b"one\n");
    assert_eq!(kept(&mut *store, "zulu", 2), b"two\n");
    assert_eq!(kept(&mut *store, "alpha", 2), b"ok\n");
    assert!(kept(&mut *store, "mike", 1).is_empty());
    assert_eq!(
        job(&mut *store, "alpha").output_tail.as_deref(),
        Some("ok\n")
    );
    assert_eq!(
        job(&mut *store, "zulu").output_tail.as_deref(),
        Some("two\n")
    );

    // A new attempt is recorded under the job's key, and shows after the old ones.
    let run = claim(&mut *store, "w3", LONG_LEASE).expect("the pending job");
    assert_eq!((run.id.as_str(), run.lease_token), ("zulu", 3));
    assert!(
        report(&mut *store, &[failed(&run, &no_backoff())])
            .rejected
            .is_empty()
    );
    let run = claim(&mut *store, "w3", LONG_LEASE).expect("the retried job");
    assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
    let tokens: Vec<i64> = history(&mut *store, "zulu").iter().map(|a| a.0).collect();
    assert_eq!(tokens, [1, 2, 3, 4]);
    assert_eq!(job(&mut *store, "zulu").state, JobState::Completed);
    assert_eq!(
        raw.number(&format!(
            "SELECT count(*) FROM attempts WHERE {key} = \
             (SELECT {job_key} FROM jobs WHERE id = 'zulu')"
        )),
        4
    );

    // Cleaning deletes the history with the jobs, through the new key.
    let request = CleanRequest {
        states: vec![JobState::Completed],
        older_than: None,
        limit: None,
    };
    assert_eq!(store.clean(&request).expect("clean").jobs, 2);
    assert_eq!(raw.number("SELECT count(*) FROM attempts"), 1);
    assert_eq!(history(&mut *store, "mike").len(), 1);
}

#[test]
fn a_version_3_store_is_migrated_in_place_sqlite() {
    migrates_version_3(Backend::Sqlite);
}

#[test]
fn a_version_3_store_is_migrated_in_place_postgres() {
    migrates_version_3(Backend::Postgres);
}
