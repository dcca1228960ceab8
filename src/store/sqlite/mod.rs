//! The embedded store: one SQLite file in WAL mode.
//!
//! Invariants kept here:
//! - Every write runs in a `BEGIN IMMEDIATE` transaction, so a transaction never has
//!   to upgrade a read lock to a write lock (the case where SQLite returns
//!   `SQLITE_BUSY` at once, ignoring the busy timeout). Together with the busy
//!   timeout this keeps `database is locked` away from users.
//! - A claim is one `UPDATE ... RETURNING` inside that write transaction: SQLite has a
//!   single writer, so no two connections, threads or processes can claim one job.
//! - `synchronous=FULL`: when a transaction commits, it survives power loss.
//! - A short command that finds no other connection open holds the file alone
//!   (`locking_mode=EXCLUSIVE`) for its few milliseconds; any open connection makes
//!   that attempt fail at once, and the command then locks normally, so workers and
//!   commands always share the store as SQLite's WAL mode intends.
//! - The file is created 0600 inside a directory created 0700.
//! - A job has two numbers that never change (schema version 7): `seq`, its place
//!   in enqueue order (unique; every listing, export and tie-break uses it), and
//!   `pos`, the rowid, where its row lies (run order within a batch of mixed
//!   priorities, else after the last row), which also keys its attempts. `pos` is
//!   never shown and never leaves the store.
//!
//! Layout: this file holds [`SqliteStore`], how it opens, and the two ways it runs
//! a transaction (`write` for writers, `transact` for the round trip that may only
//! read); `impl Store` picks one per operation and hands the work to the module that
//! owns it:
//! - `schema`: the private file, the file's identity and the migrations;
//! - `access`: opening a store this user can only read, and the errors for a
//!   read-only or missing store;
//! - `wal`: holding the file alone, keeping the WAL short;
//! - `support`: what the parts share: rows into jobs and attempts, sibling files,
//!   the clock, and what a SQLite error means;
//! - `wake`: the doorbell that wakes workers when there is work, and the WAL watch
//!   that wakes `wait` and `logs -f` on every commit;
//! - `exchange`: the worker round trip (finished runs, renewals, output, claims);
//! - `jobs`: enqueueing, reading, listing and counting jobs;
//! - `ids`: finding jobs by the start of their id;
//! - `control`: `retry` and `dlq retry` (one operation, two rules), `cancel`, `clean`;
//! - `schedule`: what a job's end does to the jobs that run after it, and queue
//!   settings;
//! - `output`: output chunks of running attempts, and reading output back;
//! - `workers`: the worker rows, stop requests, and the running jobs recovery reads;
//! - `transfer`: export and import;
//! - `cron`: recurring jobs (`cron add/list/...`) and firing due entries;
//! - `attempt_plans` (tests only): attempts are found through their `job_pos` key;
//! - `batch_layout` (tests only): a mixed batch's rows go in in run order;
//! - `stats`: the aggregates of `stats` and `metrics`, and the history's rollup.
//!
//! Every statement is a named constant in the module that runs it, named after what
//! it does (`CLAIM_NEXT`, `RENEW_LEASES`, ...). The PostgreSQL backend uses the same
//! name for an operation both backends have, so its two dialects read side by side.
//! Where PostgreSQL passes arrays to one statement, SQLite runs the statement of the
//! same name once per row: a cached prepared statement in process costs no round
//! trip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior, params};

use super::{
    AttemptRecord, CleanRequest, Cleaned, Counts, CronEntry, CronFired, Duty, Emit, Enqueued,
    Exchange, ExchangeReply, IfMissing, JobRecord, Lease, LeaseCheck, NewCronEntry, OpenFor,
    OutputRead, QueueChange, QueueRow, Result, RunningJob, StopRequest, Store, Wake, WorkerInfo,
    WorkerRow, WorkerState,
};
use crate::config::Config;
use crate::job::{self, Cancel, Job, JobState, NewJob};

mod access;
#[cfg(test)]
mod attempt_plans;
#[cfg(test)]
mod batch_layout;
mod completed;
mod control;
mod cron;
mod exchange;
mod ids;
mod jobs;
mod output;
mod schedule;
mod schema;
mod stats;
mod support;
mod transfer;
mod wake;
mod wal;
mod workers;

use super::millis;
pub(super) use support::remove_files;
use support::{attempt_from_row, db_error, is_busy, job_from_row, now_ms, sibling};

/// How long a statement waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

/// Every setting, as `key, value`.
const READ_SETTINGS: &str = "SELECT key, value FROM settings";

/// Stores one setting, replacing its value.
const WRITE_SETTING: &str = "INSERT INTO settings (key, value) VALUES (?1, ?2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// `PRAGMA data_version` when last asked: it changes only when another
    /// connection commits.
    data_version: i64,
    purpose: OpenFor,
    /// Holds the file alone (see `wal::take_if_alone`), and so looks after the WAL.
    alone: bool,
    /// Opened read-only (see `access`): every write is refused up front.
    read_only: bool,
    /// Whether this connection has written (and so decided whether to start the
    /// WAL over).
    wal_checked: bool,
    /// For a short command: Ctrl-Z waits until the store is closed. Declared
    /// after `conn`, so it is dropped (and a pending stop delivered) after it.
    _stop_deferred: Option<StopDeferred>,
}

/// Keeps SIGTSTP (Ctrl-Z) blocked on this thread while it lives; a stop asked for
/// meanwhile happens when it is dropped. A short command may hold the store's write
/// lock, or the whole file, for its short life: stopped then, it froze every other
/// user of the store until resumed. Workers handle SIGTSTP themselves, between round
/// trips (`worker::supervisor::exit`).
struct StopDeferred {
    previous: libc::sigset_t,
}

impl StopDeferred {
    fn new() -> Option<StopDeferred> {
        // SAFETY: the sets are plain data initialised by sigemptyset; the calls only
        // change this thread's signal mask.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGTSTP);
            (libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut previous) == 0)
                .then_some(StopDeferred { previous })
        }
    }
}

impl Drop for StopDeferred {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on this same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (0600, in a 0700 directory) if
    /// `if_missing` says so, and migrating it as needed. Refuses directories, files
    /// that are not queuectl stores and stores from a newer queuectl. A store this
    /// user can only read opens read-only (see `access`).
    pub fn open(path: &Path, purpose: OpenFor, if_missing: IfMissing) -> Result<SqliteStore> {
        let stop_deferred = (purpose == OpenFor::Command)
            .then(StopDeferred::new)
            .flatten();
        schema::create_private_file(path, if_missing)?;
        let wal_existed = wal::wal_path(path).exists();
        let (conn, read_only) =
            access::connect(path, |conn| schema::read_identity(conn).map(|_| ()))?;
        let alone = purpose == OpenFor::Command
            && wal_existed
            && !read_only
            && wal::take_if_alone(&conn).map_err(|e| schema::open_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;

        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            data_version: 0,
            purpose,
            alone,
            read_only,
            wal_checked: false,
            _stop_deferred: stop_deferred,
        };
        store.migrate()?;
        // A short-lived CLI command is often the last connection to close; without
        // this it would checkpoint the whole WAL (and fsync the database) on every
        // `enqueue`. Checkpoints still happen automatically as the WAL grows. Set
        // only once the file is known to be ours, so a refused file is left as it
        // was found.
        store
            .conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(db_error)?;
        if read_only {
            return Ok(store);
        }
        store
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;

        if !wal_existed {
            // SQLite is built without its per-connection directory sync (see
            // .cargo/config.toml): make a new store file and WAL file durable here.
            wal::sync_parent_dir(path)?;
        }
        Ok(store)
    }

    fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<T>,
    ) -> Result<T> {
        if self.alone && !self.wal_checked {
            self.wal_checked = true;
            self.start_long_wal_over();
        }
        self.transact(TransactionBehavior::Immediate, f)
    }

    /// Runs `f` in one transaction. Writers must pass `Immediate` (see the module docs);
    /// `Deferred` is for transactions that only read.
    fn transact<T>(
        &mut self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<T>,
    ) -> Result<T> {
        if self.read_only && !matches!(behavior, TransactionBehavior::Deferred) {
            return Err(access::read_only_error(
                &self.path,
                access::READS_STILL_WORK,
            ));
        }
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(db_error)?;
        let value = f(&tx, now_ms())?;
        tx.commit().map_err(db_error)?;
        Ok(value)
    }

    /// After a commit that made work for workers (see `wake`): rings the doorbell.
    fn ring_if(&self, made_work: bool) {
        if made_work {
            wake::ring(&self.path);
        }
    }

    fn lease_timeout(&mut self) -> Result<Duration> {
        Ok(Config::from_stored(&self.settings()?).lease_timeout)
    }

    /// Moves the rollups of `metrics` and of the job counts forward when one is a
    /// step behind (a small write, at most once per step; a cheap read otherwise).
    /// Moves the history into the rollups when due. A read-only store is reported
    /// as it is: rolling only moves old rows into totals that the counts add back.
    fn roll_if_due(&mut self) -> Result<()> {
        if !self.read_only && stats::roll_due(&self.conn, now_ms())? {
            self.write(stats::roll_if_due)?;
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn spool_dir(&self) -> PathBuf {
        sibling(&self.path, ".spool")
    }

    fn subscribe(&self, wake: Wake) -> Result<()> {
        wake::watch_through_directory(&wal::wal_path(&self.path), wake)
    }

    /// Duty is PostgreSQL's: every SQLite worker hears the doorbell.
    fn subscribe_worker(&self, wake: Wake, _duty: Arc<Duty>) -> Result<()> {
        wake::watch_doorbell(&self.path, wake)
    }

    fn changed_elsewhere(&mut self) -> bool {
        let version = self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0));
        match version {
            Ok(version) if version == self.data_version => false,
            Ok(version) => {
                self.data_version = version;
                true
            }
            Err(_) => true,
        }
    }

    fn settings(&mut self) -> Result<BTreeMap<String, String>> {
        let mut stmt = self.conn.prepare_cached(READ_SETTINGS).map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.write(|tx, _| {
            tx.execute(WRITE_SETTING, params![key, value])
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn enqueue(&mut self, new_jobs: &[NewJob]) -> Result<Enqueued> {
        let enqueued = self.write(|tx, now| jobs::enqueue(tx, now, new_jobs))?;
        self.ring_if(!new_jobs.is_empty());
        Ok(enqueued)
    }

    fn job(&mut self, id: &str) -> Result<Option<Job>> {
        jobs::job(&self.conn, id)
    }

    fn ids_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<super::ids::IdMatches> {
        ids::with_prefix(&self.conn, prefix, limit)
    }

    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>> {
        jobs::attempts(&self.conn, id)
    }

    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>> {
        jobs::list(&self.conn, state, limit)
    }

    fn list_jobs(&mut self, listing: &crate::store::JobListing) -> Result<Vec<Job>> {
        jobs::list_jobs(&self.conn, listing)
    }

    fn counts(&mut self) -> Result<Counts> {
        self.roll_if_due()?;
        jobs::counts(&mut self.conn)
    }

    fn jobs_in_flight(&mut self) -> Result<bool> {
        jobs::jobs_in_flight(&self.conn)
    }

    fn throughput(
        &mut self,
        window: Duration,
        bucket: Duration,
    ) -> Result<crate::store::Throughput> {
        let now = now_ms();
        let (since, bucket_ms, count) = crate::store::Throughput::bounds(now, window, bucket);
        let mut stmt = self.conn.prepare_cached(THROUGHPUT).map_err(db_error)?;
        let rows = stmt
            .query_map(params![since, bucket_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<(i64, i64, i64)>>>()
            .map_err(db_error)?;
        Ok(crate::store::Throughput::from_rows(
            now, bucket_ms, count, rows,
        ))
    }

    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>> {
        let dead = [JobState::Dead];
        let retried =
            self.write(|tx, now| control::retry(tx, now, ids, &dead, job::after_dlq_retry))?;
        self.ring_if(!retried.is_empty());
        Ok(retried)
    }

    fn retry(&mut self, ids: Option<&[String]>, states: &[JobState]) -> Result<Vec<String>> {
        let retried =
            self.write(|tx, now| control::retry(tx, now, ids, states, job::after_retry))?;
        self.ring_if(!retried.is_empty());
        Ok(retried)
    }

    fn cancel(&mut self, ids: &[String]) -> Result<Vec<(String, Cancel)>> {
        let plan = self.write(|tx, now| control::cancel(tx, now, ids))?;
        self.ring_if(!plan.is_empty());
        Ok(plan)
    }

    fn clean(&mut self, request: &CleanRequest) -> Result<Cleaned> {
        self.write(|tx, now| control::clean(tx, now, request))
    }

    fn output(&mut self, job_id: &str, lease_token: i64, from: u64) -> Result<OutputRead> {
        self.transact(TransactionBehavior::Deferred, |tx, _| {
            output::read(tx, job_id, lease_token, from)
        })
    }

    fn register_workers(&mut self, started: &[WorkerInfo]) -> Result<()> {
        self.write(|tx, now| workers::register(tx, now, started))
    }

    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()> {
        self.write(|tx, now| workers::end(tx, now, ids, state))
    }

    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>> {
        let stale_before = now_ms() - millis(self.lease_timeout()?);
        workers::list(&self.conn, stale_before, include_ended)
    }

    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>> {
        let lease = millis(self.lease_timeout()?);
        let ids = self.write(|tx, now| workers::request_stop(tx, now - lease, host, stop))?;
        // Idle workers notice at once instead of at their next poll.
        self.ring_if(!ids.is_empty());
        Ok(ids)
    }

    fn exchange(&mut self, ex: &Exchange<'_>) -> Result<ExchangeReply> {
        let behavior = if ex.writes() {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let (reply, requeued) =
            self.transact(behavior, |tx, now| exchange::exchange(tx, now, ex))?;
        self.ring_if(requeued);
        Ok(reply)
    }

    fn running_jobs(&mut self) -> Result<Vec<RunningJob>> {
        workers::running_jobs(&self.conn, now_ms())
    }

    fn reconcile(&mut self, workers: &[String], leases: &[Lease]) -> Result<LeaseCheck> {
        self.transact(TransactionBehavior::Deferred, |tx, _| {
            workers::reconcile(tx, workers, leases)
        })
    }

    fn export(&mut self, state: Option<JobState>, emit: Emit<'_>) -> Result<()> {
        transfer::export(&self.conn, state, emit)
    }

    fn import(&mut self, records: &[JobRecord]) -> Result<()> {
        self.write(|tx, now| transfer::import(tx, now, records))?;
        self.ring_if(!records.is_empty());
        Ok(())
    }

    fn queues(&mut self) -> Result<Vec<QueueRow>> {
        self.roll_if_due()?;
        self.transact(TransactionBehavior::Deferred, schedule::queues)
    }

    fn set_queue(&mut self, name: &str, change: QueueChange) -> Result<()> {
        self.write(|tx, _| schedule::set_queue(tx, name, change))?;
        self.ring_if(true);
        Ok(())
    }

    // Recurring jobs (cron). Adding or resuming an entry wakes the workers, which
    // fire it when it is due.

    fn cron_add(&mut self, entry: &NewCronEntry) -> Result<Option<CronEntry>> {
        let added = self.write(|tx, now| cron::add(tx, now, entry))?;
        self.ring_if(added.is_some());
        Ok(added)
    }

    fn cron_list(&mut self) -> Result<Vec<CronEntry>> {
        cron::list(&self.conn)
    }

    fn cron_remove(&mut self, name: &str) -> Result<bool> {
        self.write(|tx, _| cron::remove(tx, name))
    }

    fn cron_set_paused(&mut self, name: &str, paused: bool) -> Result<Option<CronEntry>> {
        let entry = self.write(|tx, now| cron::set_paused(tx, now, name, paused))?;
        self.ring_if(!paused && entry.is_some());
        Ok(entry)
    }

    fn cron_fire(&mut self) -> Result<CronFired> {
        let now = now_ms();
        let earliest = cron::earliest(&self.conn)?;
        if earliest.is_none_or(|at| at > now) {
            return Ok(CronFired {
                next_due_in: super::cron::due_in(earliest, now),
                ..CronFired::default()
            });
        }
        self.write(cron::fire)
    }

    fn stats(&mut self, request: &super::stats::StatsRequest) -> Result<super::stats::StatsRaw> {
        self.transact(TransactionBehavior::Deferred, |tx, now| {
            stats::stats(tx, now, request)
        })
    }

    fn metrics(&mut self) -> Result<super::stats::MetricsRaw> {
        self.roll_if_due()?;
        self.transact(TransactionBehavior::Deferred, stats::metrics)
    }
}

/// Attempts finished since `?1`, per bucket of `?2` ms: (index, succeeded, all).
const THROUGHPUT: &str = "SELECT (finished_at - ?1) / ?2 AS b, \
    sum(outcome = 'succeeded'), count(*) FROM attempts WHERE finished_at >= ?1 \
    GROUP BY b";
