//! The store conformance suite: what every [`Store`] must do, written once against
//! the trait and run in process (no `queuectl` binary, no child process) for each
//! backend, like River's `riverdrivertest`.
//!
//! `conformance_test!(name, |stores| { ... })` makes `name::sqlite` and
//! `name::postgres`. The body gets a [`TestStore`]: a store of its own (a temporary
//! SQLite file, or a PostgreSQL schema of its own) that any number of connections can
//! open, and that is deleted when the test ends, panicking or not. The PostgreSQL
//! variant runs when `QUEUECTL_TEST_POSTGRES_URL` is set; otherwise it prints that it
//! was skipped, or fails if `CI` is set (`tests/common/mod.rs`, shared with the
//! black-box suite).
//!
//! Tests drive the store as the worker does: transitions come from
//! [`queuectl::job`] (`after_attempt`, `after_interruption`, ...), never written by
//! hand, and nothing waits with a fixed sleep; [`wait_until`] polls with a deadline.

use std::time::{Duration, Instant};

use queuectl::backoff::Backoff;
use queuectl::error::StoreError;
use queuectl::job::{AttemptOutcome, Job, NewJob, Outcome, Transition, after_attempt};
use queuectl::store::{
    self, Exchange, ExchangeReply, Finished, IfMissing, Lease, Location, OpenFor, Store,
};

mod activity;
mod claims;
mod control;
mod cron;
mod dead_letters;
mod ids;
mod leases;
mod listing;
mod missing;
mod output;
mod schedule;
mod settings;
mod stats;
mod transfer;
mod upgrade;
mod upgrade_counts;
mod upgrade_layout;
mod wakes;
mod workers;

/// Which backend a test variant runs on, and the PostgreSQL server for tests: the
/// same rules as the black-box suite (a skipped PostgreSQL half says so, and fails
/// when `CI` is set).
#[path = "../common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;
pub use common::Backend;
use common::postgres_url;

/// One test's store. Every [`TestStore::open`] is another connection to the same
/// store, so a test can play several workers at once. Dropping it deletes the store
/// (the schema, or the temporary directory), also when the test panics.
pub struct TestStore {
    backend: Backend,
    location: Location,
    /// Holds the SQLite file's directory; `None` for PostgreSQL.
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A new, empty store on `backend`, or `None` when PostgreSQL is not configured.
    pub fn new(backend: Backend) -> Option<TestStore> {
        let test_store = TestStore::unopened(backend)?;
        // Create the schema now, so concurrent first opens are not part of any test.
        drop(test_store.open());
        Some(test_store)
    }

    /// A place for a store on `backend` that nothing has opened yet: no file (SQLite)
    /// or no schema (PostgreSQL), for tests that build a store by hand with [`Raw`].
    pub fn unopened(backend: Backend) -> Option<TestStore> {
        let (location, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let path = dir.path().join("queue.db");
                (Location::Sqlite(path), Some(dir))
            }
            Backend::Postgres => {
                let url = postgres_url()?;
                let schema = format!("qc_{}", uuid::Uuid::now_v7().simple());
                let location = Location::parse(&url, Some(&schema))
                    .expect("QUEUECTL_TEST_POSTGRES_URL is a valid postgres:// URL");
                (location, None)
            }
        };
        Some(TestStore {
            backend,
            location,
            _dir: dir,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens the store as queuectl does, returning its error instead of panicking.
    pub fn try_open(&self) -> Result<Box<dyn Store>, StoreError> {
        store::open(&self.location, OpenFor::Worker, IfMissing::Create)
    }

    /// Opens the store as a command that only reads does: never creating it.
    pub fn try_open_to_read(&self) -> Result<Box<dyn Store>, StoreError> {
        store::open(&self.location, OpenFor::Command, IfMissing::Refuse)
    }

    /// Whether anything of this store exists: its file or any file beside it
    /// (SQLite), or its schema (PostgreSQL). Never creates anything.
    pub fn exists(&self) -> bool {
        match &self.location {
            Location::Sqlite(path) => std::fs::read_dir(path.parent().expect("a directory"))
                .expect("read the test directory")
                .next()
                .is_some(),
            Location::Postgres(pg) => {
                let url = postgres_url().expect("a PostgreSQL test has its URL");
                let mut client = postgres::Client::connect(&url, postgres::NoTls)
                    .expect("connect to the test PostgreSQL server");
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                        &[&pg.schema],
                    )
                    .expect("look for the schema");
                row.get::<_, i64>(0) > 0
            }
        }
    }

    /// A plain SQL connection to this store, beside queuectl: to build old stores,
    /// age rows and look at tables no [`Store`] method shows.
    pub fn raw(&self) -> Raw {
        match &self.location {
            Location::Sqlite(path) => {
                Raw::Sqlite(rusqlite::Connection::open(path).expect("open the SQLite file"))
            }
            Location::Postgres(pg) => {
                let url = postgres_url().expect("a PostgreSQL test has its URL");
                let mut client = postgres::Client::connect(&url, postgres::NoTls)
                    .expect("connect to the test PostgreSQL server");
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS {0}; SET search_path TO {0}",
                        pg.schema
                    ))
                    .expect("use the test's schema");
                Raw::Postgres(client)
            }
        }
    }

    /// Another connection to this store.
    pub fn open(&self) -> Box<dyn Store> {
        store::open(&self.location, OpenFor::Worker, IfMissing::Create)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.location.describe()))
    }

    /// A second, empty store on the same backend (for export and import).
    pub fn another(&self) -> TestStore {
        TestStore::new(self.backend).expect("the backend of a running test is available")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Location::Postgres(pg) = &self.location else {
            return;
        };
        if store::remove_scratch(&self.location).is_ok() {
            return;
        }
        // A schema queuectl refuses to open (one made "by a newer release") is
        // dropped by hand. Never panic here: the test may already be panicking.
        let dropped = postgres_url()
            .ok_or_else(|| "no URL".to_owned())
            .and_then(|url| {
                let mut client =
                    postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema);
                client.batch_execute(&sql).map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop {}: {e}", self.location.describe());
        }
    }
}

/// Plain SQL on a test's store (see [`TestStore::raw`]). Statements are written to
/// read the same in both dialects.
pub enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Raw {
    /// Runs statements that return nothing.
    pub fn run(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(conn) => conn.execute_batch(sql).expect(sql),
            Raw::Postgres(client) => client.batch_execute(sql).expect(sql),
        }
    }

    /// The one integer a query returns (`count(*)`, a version, ...).
    pub fn number(&mut self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(conn) => conn.query_row(sql, [], |r| r.get(0)).expect(sql),
            Raw::Postgres(client) => client.query_one(sql, &[]).expect(sql).get(0),
        }
    }

    /// The one text column a query returns, row by row (NULL as the empty text).
    pub fn texts(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).expect(sql);
                let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0));
                let rows = rows.expect(sql).collect::<rusqlite::Result<Vec<_>>>();
                rows.expect(sql)
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect()
            }
            Raw::Postgres(client) => client
                .query(sql, &[])
                .expect(sql)
                .iter()
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
                .collect(),
        }
    }
}

/// Runs a test body on `backend`, or returns at once if that backend is skipped.
pub fn run(backend: Backend, body: fn(&TestStore)) {
    if let Some(test_store) = TestStore::new(backend) {
        body(&test_store);
    }
}

/// Generates `mod $name { fn sqlite(); fn postgres(); }`, both running `$body` with a
/// [`TestStore`] of their own.
macro_rules! conformance_test {
    ($name:ident, |$stores:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($stores: &$crate::TestStore) $body

            #[test]
            fn sqlite() {
                $crate::run($crate::Backend::Sqlite, body);
            }

            #[test]
            fn postgres() {
                $crate::run($crate::Backend::Postgres, body);
            }
        }
    };
}
pub(crate) use conformance_test;

/// The lease a claim takes when the test is not about expiry: long enough never to
/// run out during a test.
pub const LONG_LEASE: Duration = Duration::from_secs(60);

/// A job to enqueue with id `id` and the store's default `max_retries`.
pub fn new_job(id: &str) -> NewJob {
    NewJob::new(id.to_owned(), format!("echo {id}"), "/".to_owned())
}

/// Enqueues `ids` as one batch.
pub fn enqueue(store: &mut dyn Store, ids: &[&str]) {
    let jobs: Vec<NewJob> = ids.iter().map(|id| new_job(id)).collect();
    store.enqueue(&jobs).expect("enqueue");
}

/// One round trip, as a worker makes it; panics if the store fails.
pub fn exchange(store: &mut dyn Store, exchange: &Exchange<'_>) -> ExchangeReply {
    store.exchange(exchange).expect("exchange")
}

/// Claims one job for `worker` under a lease of `lease_timeout`.
pub fn claim(store: &mut dyn Store, worker: &str, lease_timeout: Duration) -> Option<Job> {
    let reply = exchange(
        store,
        &Exchange {
            claim_for: &[worker.to_owned()],
            lease_timeout,
            ..Exchange::default()
        },
    );
    reply.claimed.into_iter().next().map(|(_, job)| job)
}

/// Reports finished runs; returns the store's answer.
pub fn report(store: &mut dyn Store, finished: &[Finished]) -> ExchangeReply {
    exchange(
        store,
        &Exchange {
            finished,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    )
}

/// Renews `leases`; returns those the store says are lost.
pub fn renew(store: &mut dyn Store, leases: &[Lease]) -> Vec<Lease> {
    let reply = exchange(
        store,
        &Exchange {
            renew: leases,
            lease_timeout: LONG_LEASE,
            ..Exchange::default()
        },
    );
    reply.lost
}

pub fn lease_of(job: &Job) -> Lease {
    Lease {
        job_id: job.id.clone(),
        token: job.lease_token,
    }
}

/// A backoff with no delay: a failed job is claimable again at once.
pub fn no_backoff() -> Backoff {
    Backoff::new(1.0, Duration::ZERO)
}

/// The report of a run of `job` (as claimed) that ended with `outcome`, with the
/// transition the worker computes for it.
pub fn ran(job: &Job, outcome: Outcome, backoff: &Backoff) -> Finished {
    let recorded = AttemptOutcome::of(&outcome);
    let transition = after_attempt(
        job.attempts,
        job.max_retries,
        job.interruptions,
        &outcome,
        backoff,
    );
    finished(job, recorded, transition)
}

/// A run of `job` that succeeded.
pub fn succeeded(job: &Job) -> Finished {
    ran(job, Outcome::Succeeded, &no_backoff())
}

/// A run of `job` whose command exited 1.
pub fn failed(job: &Job, backoff: &Backoff) -> Finished {
    let outcome = Outcome::Failed {
        exit_code: Some(1),
        error: "exit code 1".to_owned(),
    };
    ran(job, outcome, backoff)
}

/// The report of a run of `job`, fenced by the lease it was claimed under.
pub fn finished(job: &Job, outcome: AttemptOutcome, transition: Transition) -> Finished {
    Finished {
        lease: lease_of(job),
        worker_id: job.worker_id.clone(),
        outcome,
        transition,
        output_tail: None,
        output: None,
        facts: Default::default(),
        only_if_expired: false,
    }
}

/// The job `id`, which must exist.
pub fn job(store: &mut dyn Store, id: &str) -> Job {
    store
        .job(id)
        .expect("read a job")
        .unwrap_or_else(|| panic!("job {id} is missing"))
}

/// Polls `check` every 10 ms until it returns true; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
