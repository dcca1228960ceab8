//! Upgrade to schema version 7 (SQLite's layout key `pos`, issue 11; DECISIONS.md
//! §24): a version-6 store opens migrated in place, every job and attempt intact
//! (SQLite: every column of every row, `seq`s included), every index of `jobs` and
//! `attempts` there again, and it works: claims, finishes, `clean` and a batch of
//! mixed priorities. PostgreSQL's version 7 changes nothing; it is counted so that
//! both stores report one version.

use queuectl::job::{AttemptOutcome, JobState, NewJob};
use queuectl::store::CleanRequest;

use crate::upgrade::{CURRENT_VERSION, attempt_key};
use crate::{Backend, LONG_LEASE, Raw, TestStore, claim, job, report, succeeded};

/// Makes the store a version-6 store, as the release before version 7 created it:
/// `done` (completed with its output `hello`), `flaky` (completed on its second
/// attempt), `gone` (dead after a silent attempt), `next` (pending, priority 9,
/// q2), `child` (pending after `next`), `keyed` (pending with a unique key) and
/// `stopped` (cancelled), enqueued in that order, ids against their order.
fn build_version_6(stores: &TestStore, raw: &mut Raw) {
    match stores.backend() {
        Backend::Sqlite => raw.run(&format!(
            "{}\n{}\n{}\n{}\n{}\n{}\nPRAGMA application_id = {}; PRAGMA user_version = 6;",
            include_str!("../../src/store/sqlite/0001_init.sql"),
            include_str!("../../src/store/sqlite/0002_control.sql"),
            include_str!("../../src/store/sqlite/0003_schedule.sql"),
            include_str!("../../src/store/sqlite/0004_attempt_seq.sql"),
            include_str!("../../src/store/sqlite/0005_stats.sql"),
            include_str!("../../src/store/sqlite/0006_completed_rollup.sql"),
            0x5143_544C
        )),
        Backend::Postgres => raw.run(&format!(
            "{}\n{}\n{}\n{}\n{}\n{}\nINSERT INTO schema_version (version) VALUES (6);",
            include_str!("../../src/store/postgres/0001_init.sql"),
            include_str!("../../src/store/postgres/0002_control.sql"),
            include_str!("../../src/store/postgres/0003_schedule.sql"),
            include_str!("../../src/store/postgres/0004_attempt_seq.sql"),
            include_str!("../../src/store/postgres/0005_stats.sql"),
            include_str!("../../src/store/postgres/0006_completed_rollup.sql")
        )),
    }
    let yes = match stores.backend() {
        Backend::Sqlite => "1",
        Backend::Postgres => "true",
    };
    raw.run(&format!(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, created_at, \
             updated_at, next_run_at, lease_token, worker_id, started_at, finished_at, \
             exit_code, last_error, queue, priority, unique_key, blocked_by, \
             has_dependents, timeout_ms) VALUES \
         ('done', 'echo hello', '/', 'completed', 1, 3, 1000, 2000, 1000, 1, 'w1', 1500, \
             2000, 0, NULL, 'q1', 0, NULL, 0, {no}, 5000), \
         ('flaky', 'true', '/', 'completed', 2, 3, 1100, 2600, 1100, 2, 'w1', 2500, 2600, \
             0, NULL, 'q1', 3, NULL, 0, {no}, NULL), \
         ('gone', 'exit 3', '/', 'dead', 1, 0, 1200, 2300, 1200, 1, 'w1', 2250, 2300, 3, \
             'exit code 3', 'q2', 0, NULL, 0, {no}, NULL), \
         ('next', 'true', '/', 'pending', 0, 3, 1300, 1300, 1300, 0, NULL, NULL, NULL, \
             NULL, NULL, 'q2', 9, NULL, 0, {yes}, NULL), \
         ('child', 'true', '/', 'pending', 0, 3, 1400, 1400, 1400, 0, NULL, NULL, NULL, \
             NULL, NULL, 'q2', 0, NULL, 1, {no}, NULL), \
         ('keyed', 'true', '/', 'pending', 0, 3, 1500, 1500, 1500, 0, NULL, NULL, NULL, \
             NULL, NULL, 'q1', 1, 'k', 0, {no}, NULL), \
         ('stopped', 'true', '/', 'cancelled', 0, 3, 1600, 1700, 1600, 0, NULL, NULL, \
             1700, NULL, 'cancelled', 'q1', 0, NULL, 0, {no}, NULL);
         INSERT INTO job_dependencies (job_id, after_id) VALUES ('child', 'next');
         INSERT INTO attempts (job_seq, job_id, lease_token, worker_id, started_at, \
             finished_at, outcome, exit_code, error, output_tail, host, pid) \
         SELECT seq, id, 1, 'w1', 1500, 2000, 'succeeded', 0, NULL, 'hello\n', 'h1', 7 \
             FROM jobs WHERE id = 'done' \
         UNION ALL SELECT seq, id, 1, 'w1', 2300, 2400, 'failed', 1, 'exit code 1', \
             'no\n', 'h1', 8 FROM jobs WHERE id = 'flaky' \
         UNION ALL SELECT seq, id, 2, 'w2', 2500, 2600, 'succeeded', 0, NULL, NULL, \
             'h2', 9 FROM jobs WHERE id = 'flaky' \
         UNION ALL SELECT seq, id, 1, 'w1', 2250, 2300, 'failed', 3, 'exit code 3', \
             NULL, 'h1', 10 FROM jobs WHERE id = 'gone';",
        no = if yes == "1" { "0" } else { "false" },
    ));
    // Kept output as versions 2 and later write it.
    raw.run(match stores.backend() {
        Backend::Sqlite => {
            "UPDATE attempts SET output = CAST(output_tail AS BLOB), \
             output_total = length(output_tail)"
        }
        Backend::Postgres => {
            "UPDATE attempts SET output = convert_to(output_tail, 'UTF8'), \
             output_total = length(output_tail)"
        }
    });
}

/// Every column of every row of `table` but `leave_out`, as text, in `order`
/// (SQLite).
fn rows(raw: &mut Raw, table: &str, leave_out: &str, order: &str) -> Vec<String> {
    let columns = raw.texts(&format!(
        "SELECT name FROM pragma_table_info('{table}') WHERE name <> '{leave_out}' ORDER BY name"
    ));
    let quoted: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
    raw.texts(&format!(
        "SELECT {} FROM {table} ORDER BY {order}",
        quoted.join(" || ',' || ")
    ))
}

/// The indexes of `jobs` and `attempts` that a schema file wrote, with their SQL
/// (SQLite; the keys SQLite makes itself have none).
fn indexes(raw: &mut Raw) -> Vec<String> {
    raw.texts(
        "SELECT name || ': ' || sql FROM sqlite_schema WHERE type = 'index' \
         AND tbl_name IN ('jobs', 'attempts') AND sql IS NOT NULL ORDER BY name",
    )
}

fn ids(jobs: &[queuectl::job::Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

fn migrates_version_6(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    let mut raw = stores.raw();
    build_version_6(&stores, &mut raw);
    let sqlite = backend == Backend::Sqlite;
    let before = sqlite.then(|| {
        (
            rows(&mut raw, "jobs", "", "seq"),
            rows(&mut raw, "attempts", "job_seq", "job_id, lease_token"),
            indexes(&mut raw),
            raw.texts(
                "SELECT a.job_id || ',' || j.seq FROM attempts a \
                 JOIN jobs j ON j.seq = a.job_seq ORDER BY a.job_id, a.lease_token",
            ),
        )
    });
    drop(raw);

    let mut store = stores.try_open().expect("a version-6 store opens");
    let mut raw = stores.raw();
    let version = match backend {
        Backend::Sqlite => raw.number("PRAGMA user_version"),
        Backend::Postgres => raw.number("SELECT version FROM schema_version"),
    };
    assert_eq!(version, CURRENT_VERSION);
    if let Some((jobs, attempts, old_indexes, keys)) = before {
        // Every column of every job as it was, `seq` included: `pos` is new, and
        // the existing rows keep their place (pos = seq).
        assert_eq!(rows(&mut raw, "jobs", "pos", "seq"), jobs);
        assert_eq!(raw.number("SELECT count(*) FROM jobs WHERE pos <> seq"), 0);
        // Every attempt as it was, now keyed by its job's pos.
        assert_eq!(
            rows(&mut raw, "attempts", "job_pos", "job_id, lease_token"),
            attempts
        );
        assert_eq!(
            raw.texts(
                "SELECT a.job_id || ',' || j.seq FROM attempts a \
                 JOIN jobs j ON j.pos = a.job_pos ORDER BY a.job_id, a.lease_token",
            ),
            keys
        );
        // Every index as it was, and `jobs_seq` besides.
        let mut expected = old_indexes;
        expected.push("jobs_seq: CREATE UNIQUE INDEX jobs_seq ON jobs (seq)".to_owned());
        expected.sort();
        let mut now = indexes(&mut raw);
        now.sort();
        assert_eq!(now, expected);
        // The id stays unique, pos is the rowid, attempts stay a rowid table.
        assert_eq!(
            raw.number("SELECT count(*) FROM pragma_index_list('jobs') WHERE \"unique\" = 1"),
            3,
            "id, seq and unique_key"
        );
        assert_eq!(raw.number("SELECT count(*) FROM jobs WHERE rowid = pos"), 7);
        assert_eq!(raw.number("SELECT count(rowid) FROM attempts"), 4);
    }
    let (key, _) = attempt_key(backend);
    assert_eq!(
        raw.number(&format!(
            "SELECT count(*) FROM attempts WHERE {key} IS NOT NULL"
        )),
        4
    );

    // Through the store: jobs, their history and output, in enqueue order.
    let all = store.list(None, None).expect("list");
    assert_eq!(
        ids(&all),
        ["done", "flaky", "gone", "next", "child", "keyed", "stopped"]
    );
    let done = job(&mut *store, "done");
    assert_eq!(
        (done.state, done.timeout_ms, done.queue.as_str()),
        (JobState::Completed, Some(5000), "q1")
    );
    assert_eq!(done.output_tail.as_deref(), Some("hello\n"));
    let kept = store.output("done", 1, 0).expect("output");
    assert!(kept.finished);
    assert_eq!(kept.pieces, [(0, b"hello\n".to_vec())]);
    let flaky: Vec<(i64, AttemptOutcome, Option<String>)> = store
        .attempts("flaky")
        .expect("attempts")
        .into_iter()
        .map(|a| (a.lease_token, a.outcome, a.facts.host))
        .collect();
    assert_eq!(
        flaky,
        [
            (1, AttemptOutcome::Failed, Some("h1".into())),
            (2, AttemptOutcome::Succeeded, Some("h2".into()))
        ]
    );
    let gone = store.attempts("gone").expect("attempts");
    assert_eq!((gone.len(), gone[0].facts.pid), (1, Some(10)));
    assert_eq!(job(&mut *store, "child").after, ["next"]);
    let counts = store.counts().expect("counts");
    assert_eq!(
        (
            counts.get(JobState::Completed),
            counts.get(JobState::Pending),
            counts.get(JobState::Dead),
            counts.get(JobState::Cancelled)
        ),
        (2, 3, 1, 1)
    );
    let waiting = store.list(Some(JobState::Pending), None).expect("list");
    assert_eq!(ids(&waiting), ["next", "keyed", "child"]);

    // And it works: the unique key still holds, claims go by priority, a finish
    // records its attempt and releases the job after it.
    let twin = NewJob {
        unique_key: Some("k".into()),
        ..NewJob::new("twin".into(), "true".into(), "/".into())
    };
    let enqueued = store.enqueue(&[twin]).expect("enqueue");
    assert_eq!(enqueued.existing, [Some("keyed".to_owned())]);
    let run = claim(&mut *store, "w3", LONG_LEASE).expect("a pending job");
    assert_eq!(run.id, "next");
    assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());
    assert_eq!(store.attempts("next").expect("attempts").len(), 1);
    assert_eq!(job(&mut *store, "child").blocked_by, 0);

    // A batch of mixed priorities after the migration: listed as given, claimed
    // by priority.
    let mixed: Vec<NewJob> = [("m1", 0), ("m2", 7), ("m3", 0)]
        .iter()
        .map(|(id, priority)| NewJob {
            priority: *priority,
            ..NewJob::new((*id).into(), "true".into(), "/".into())
        })
        .collect();
    store.enqueue(&mixed).expect("enqueue");
    let all = store.list(None, None).expect("list");
    assert_eq!(
        ids(&all)[7..],
        ["m1", "m2", "m3"],
        "new jobs come after the migrated ones, in the order given"
    );
    let run = claim(&mut *store, "w3", LONG_LEASE).expect("a pending job");
    assert_eq!(run.id, "m2");
    assert!(report(&mut *store, &[succeeded(&run)]).rejected.is_empty());

    // Cleaning deletes the history with the jobs, through the new key.
    let request = CleanRequest {
        states: vec![JobState::Completed],
        older_than: None,
        limit: None,
    };
    assert_eq!(store.clean(&request).expect("clean").jobs, 4);
    assert_eq!(raw.number("SELECT count(*) FROM attempts"), 1);
    assert_eq!(store.attempts("gone").expect("attempts").len(), 1);
    assert_eq!(store.counts().expect("counts").get(JobState::Completed), 0);
}

#[test]
fn a_version_6_store_is_migrated_in_place_sqlite() {
    migrates_version_6(Backend::Sqlite);
}

#[test]
fn a_version_6_store_is_migrated_in_place_postgres() {
    migrates_version_6(Backend::Postgres);
}

/// A store this release wrote is refused, untouched, by a release that knows
/// fewer versions: what a version-6 binary does with a version-7 store (the
/// version-6 binary answers with [`queuectl::error::StoreError::TooNew`], one line;
/// here the store is made to claim one version more than this build knows).
#[test]
fn a_store_one_version_ahead_is_refused_sqlite() {
    let Some(stores) = TestStore::new(Backend::Sqlite) else {
        return;
    };
    let mut store = stores.open();
    store
        .enqueue(&[NewJob::new("kept".into(), "true".into(), "/".into())])
        .expect("enqueue");
    drop(store);
    let mut raw = stores.raw();
    raw.run(&format!("PRAGMA user_version = {}", CURRENT_VERSION + 1));
    drop(raw);
    let refused = stores.try_open().map(|_| ());
    let Err(e) = refused else {
        panic!("a newer store opened");
    };
    let message = e.to_string();
    assert!(
        matches!(e, queuectl::error::StoreError::TooNew { found, supported }
            if found == CURRENT_VERSION + 1 && supported == CURRENT_VERSION),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    let mut raw = stores.raw();
    assert_eq!(raw.number("PRAGMA user_version"), CURRENT_VERSION + 1);
    assert_eq!(raw.number("SELECT count(*) FROM jobs"), 1);
}
