//! The PostgreSQL store: the same queue shared by workers on many machines.
//!
//! This module owns everything PostgreSQL-specific: parsing `postgres://` URLs,
//! connecting (the password comes from the URL, `PGPASSWORD` or the `.pgpass` file, as
//! with psql), the schema and its migrations, the SQL of every [`Store`] operation, and
//! LISTEN/NOTIFY wake-ups.
//!
//! Layout: this file holds [`PgStore`] (the connection, the statement cache [`Db`],
//! transactions, how driver errors become [`StoreError`]s) and the [`Store`] impl,
//! which chooses a plain read or a transaction for each operation and hands the work
//! to the file of its concern:
//! - `location`: [`PgLocation`], the parsed URL and schema option, and [`redact`];
//! - `connect`: the driver config, password lookup (`PGPASSWORD`, `.pgpass`),
//!   scrubbing passwords from messages, and opening a connection;
//! - `schema`: migrations (`0001_init.sql` beside it) and dropping a scratch schema;
//! - `listen`: LISTEN/NOTIFY wake-ups, and which worker process is on duty for them;
//! - `exchange`: a worker's round trip (record finished runs, renew, output, claim,
//!   stop and cancel requests);
//! - `jobs`: enqueue, reading, listing and counting jobs;
//! - `ids`: finding jobs by the start of their id;
//! - `control`: `retry` and `dlq retry` (one operation, two rules), `cancel`, `clean`;
//! - `output`: output chunks of running attempts, and reading output back;
//! - `workers`: registering, listing and stopping workers, running jobs;
//! - `transfer`: `export` and `import`;
//! - `cron`: recurring jobs (`cron add/list/...`) and firing due entries;
//! - `attempt_plans` (tests only): attempts are found through their `job_seq` key.
//! - `exchange_plans` (tests only): the claim's plan, and the lock of limited queues.
//! - `stats`: the aggregates of `stats` and `metrics`, and the history's rollup;
//! - `driver`: the statement cache ([`Db`]), transactions, row columns, and what a
//!   driver error means.
//!
//! Each statement is a constant named after its operation (`CLAIM_NEXT`,
//! `RECORD_FINISHED`, ...) beside the code that binds its parameters, so the same
//! operation can be read in both dialects side by side with the SQLite backend.
//!
//! Invariants kept here:
//! - Every object lives in the queue's own schema (`?schema=`, default `queuectl`): each
//!   connection's `search_path` is that schema alone, so one database holds several
//!   independent queues and nothing ever lands in `public`.
//! - Every time is the database's clock (`now_ms()`, the transaction's start on the
//!   server), never the host's, so hosts with skewed clocks agree on leases and backoff.
//! - A claim is one statement: `FOR UPDATE SKIP LOCKED` in a materialized CTE picks at
//!   most one job per idle worker and the `UPDATE` marks exactly those `processing` with
//!   a new lease token. Every write about a run is fenced by that token and
//!   `state = 'processing'`, exactly like SQLite's.
//! - Migrations run under a transaction-level advisory lock, so concurrent first starts
//!   on several machines are safe; a schema written by a newer queuectl is refused.
//! - The password stays inside the driver's config: messages name host:port only.
//! - A broken connection turns into [`StoreError::Unavailable`]; the next call
//!   reconnects, so a worker survives database restarts.
//! - Statements run through [`Db`] (`driver`) are prepared once per connection (the
//!   cache is keyed by the `&'static str` constants), so each later call is one round
//!   trip.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use postgres::{Client, GenericClient, Transaction};

use super::{
    AttemptRecord, CleanRequest, Cleaned, Counts, CronEntry, CronFired, Duty, Emit, Enqueued,
    Exchange, ExchangeReply, IfMissing, JobRecord, Lease, LeaseCheck, NewCronEntry, OutputRead,
    QueueChange, QueueRow, Result, RunningJob, StopRequest, Store, Wake, WorkerInfo, WorkerRow,
    WorkerState,
};
use crate::error::StoreError;
use crate::job::{self, Cancel, Job, JobState, NewJob};

#[cfg(test)]
mod attempt_plans;
#[cfg(test)]
mod batch_layout;
mod completed;
mod connect;
mod control;
mod cron;
mod driver;
mod exchange;
#[cfg(test)]
mod exchange_plans;
mod ids;
mod jobs;
mod listen;
mod location;
mod output;
mod schedule;
mod schema;
mod stats;
mod transfer;
mod workers;

pub use location::{PgLocation, redact};

use driver::{
    Conn, Db, Params, Step, driver_error, duplicate_id, error_text, in_transaction,
    is_connection_error, is_read_only, is_retryable, is_unique_violation,
};

/// Retries of a transaction PostgreSQL aborted to break a deadlock.
const DEADLOCK_RETRIES: u32 = 3;

/// Every setting stored for this queue.
const READ_SETTINGS: &str = "SELECT key, value FROM settings";

/// Sets setting `$1` to `$2`.
const WRITE_SETTING: &str = "INSERT INTO settings (key, value) VALUES ($1, $2) \
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The database server's clock, in ms.
const READ_NOW: &str = "SELECT now_ms()";

/// Attempts finished since `$1`, per bucket of `$2` ms: (index, succeeded, all).
const THROUGHPUT: &str = "SELECT (finished_at - $1) / $2 AS b, \
    count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FROM attempts \
    WHERE finished_at >= $1 GROUP BY b";
pub struct PgStore {
    location: PgLocation,
    config: postgres::Config,
    /// The NOTIFY channel of this queue.
    channel: String,
    /// `None` after the connection broke: the next call reconnects.
    conn: Option<Conn>,
}

impl PgStore {
    /// Connects, creating the schema on first use and migrating it as needed. Fails
    /// with [`StoreError::Unavailable`] naming host:port (never the password) when the
    /// server cannot be reached within [`CONNECT_TIMEOUT`].
    /// With `IfMissing::Refuse`, a schema without the queue's tables is reported
    /// ([`StoreError::Missing`]) and nothing is created.
    pub fn open(location: &PgLocation, if_missing: IfMissing) -> Result<PgStore> {
        let mut store = PgStore {
            location: location.clone(),
            config: connect::client_config(location)?,
            channel: listen::channel_name(&location.schema),
            conn: None,
        };
        store.migrate(if_missing)?;
        Ok(store)
    }

    /// The open connection, reconnecting if there is none or it broke.
    fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = connect::connect(&self.config, &self.location)?;
            self.conn = Some(Conn {
                client,
                stmts: HashMap::new(),
            });
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("no PostgreSQL connection"))
    }

    /// Runs `f` outside an explicit transaction (single statements, reads).
    fn read<T>(&mut self, mut f: impl FnMut(&mut Db<'_, Client>) -> Step<T>) -> Result<T> {
        let conn = self.conn()?;
        let result = f(&mut Db {
            client: &mut conn.client,
            stmts: &mut conn.stmts,
        });
        result.map_err(|e| self.failure(e))
    }

    /// Runs `f` in one transaction. A deadlock (two workers finishing and recovering
    /// the same jobs in a different order) aborts one side: that side is retried.
    fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Step<T>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            let conn = self.conn()?;
            match in_transaction(conn, &mut f) {
                Err(e)
                    if driver_error(&e).is_some_and(is_retryable) && tries < DEADLOCK_RETRIES =>
                {
                    tries += 1
                }
                result => return result.map_err(|e| self.failure(e)),
            }
        }
    }

    /// Turns a failed step into the error to report, dropping the connection if it
    /// broke so the next call reconnects.
    fn failure(&mut self, e: StoreError) -> StoreError {
        let source = match e {
            StoreError::Unavailable {
                source: Some(source),
                ..
            } if source.is::<postgres::Error>() => source,
            other => return other,
        };
        let Some(driver) = source.downcast_ref::<postgres::Error>() else {
            return StoreError::Unavailable {
                message: "PostgreSQL error".into(),
                source: Some(source),
            };
        };
        let closed = self.conn.as_ref().is_none_or(|c| c.client.is_closed());
        let at = self.location.host_port();
        if is_read_only(driver) {
            return StoreError::ReadOnly(self.scrub(format!(
                "cannot write to the store {}: {}; commands that only read it (status, \
                 list, show, logs, stats, export) still work; to change it, connect as a \
                 user who may write it, to a server that accepts writes",
                self.location.describe(),
                driver
                    .as_db_error()
                    .map_or_else(|| error_text(driver), |db| db.message().to_owned())
            )));
        }
        let message = if closed || is_connection_error(driver) {
            self.conn = None;
            format!(
                "lost the connection to PostgreSQL at {at}: {}",
                error_text(driver)
            )
        } else {
            format!("PostgreSQL error at {at}: {}", error_text(driver))
        };
        StoreError::Unavailable {
            message: self.scrub(message),
            source: Some(source),
        }
    }

    /// Moves the rollups of `metrics` and of the job counts forward when one is a
    /// step behind (a small write, at most once per step; a cheap read otherwise).
    /// Moves the history into the rollups when due. A read-only store is reported
    /// as it is: rolling only moves old rows into totals that the counts add back.
    fn roll_if_due(&mut self) -> Result<()> {
        if self.read(stats::roll_due)? {
            match self.write(stats::roll_if_due) {
                Err(StoreError::ReadOnly(_)) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn scrub(&self, message: String) -> String {
        connect::scrub_password(message, self.config.get_password())
    }
}

/// Every setting stored for this queue, by key.
fn read_settings<C: GenericClient>(db: &mut Db<'_, C>) -> Step<BTreeMap<String, String>> {
    let rows = db.query(READ_SETTINGS, &[])?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.location.describe()
    }

    fn spool_dir(&self) -> PathBuf {
        let dbname = self.config.get_dbname().unwrap_or(&self.location.dbname);
        let name = format!(
            "pg-{}-{}-{}-{}",
            self.location.host, self.location.port, dbname, self.location.schema
        );
        crate::store::data_home()
            .unwrap_or_else(|| PathBuf::from("/tmp/queuectl-spool"))
            .join("spool")
            .join(safe_file_name(&name))
    }

    fn subscribe(&self, wake: Wake) -> Result<()> {
        let config = self.config.clone();
        let channel = self.channel.clone();
        thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen::listen_forever(&config, &channel, &wake, None))
            .map_err(|e| StoreError::io("cannot start a thread", e))?;
        Ok(())
    }

    fn subscribe_worker(&self, wake: Wake, duty: Arc<Duty>) -> Result<()> {
        let config = self.config.clone();
        let channel = self.channel.clone();
        let duty = listen::DutyLock::new(&self.location.schema, duty);
        thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen::listen_forever(&config, &channel, &wake, Some(&duty)))
            .map_err(|e| StoreError::io("cannot start a thread", e))?;
        Ok(())
    }

    fn settings(&mut self) -> Result<BTreeMap<String, String>> {
        self.read(read_settings)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.write(|db| {
            db.execute(WRITE_SETTING, &[&key, &value])?;
            Ok(())
        })
    }

    fn enqueue(&mut self, jobs: &[NewJob]) -> Result<Enqueued> {
        let channel = self.channel.clone();
        self.write(|db| jobs::enqueue_in(db, jobs, &channel))
    }

    fn job(&mut self, id: &str) -> Result<Option<Job>> {
        self.read(|db| jobs::read_job(db, id))
    }

    fn ids_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<super::ids::IdMatches> {
        self.read(|db| ids::with_prefix(db, prefix, limit))
    }

    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>> {
        self.read(|db| jobs::read_attempts(db, id))
    }

    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>> {
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.read(|db| jobs::list_jobs(db, state, limit))
    }

    fn list_jobs(&mut self, listing: &crate::store::JobListing) -> Result<Vec<Job>> {
        self.read(|db| jobs::list_ordered(db, listing))
    }

    fn counts(&mut self) -> Result<Counts> {
        self.roll_if_due()?;
        // A closure, not the generic function: its client type must be inferred
        // for every transaction lifetime.
        #[allow(clippy::redundant_closure)]
        self.snapshot(|db| jobs::count_jobs(db))
    }

    fn jobs_in_flight(&mut self) -> Result<bool> {
        #[allow(clippy::redundant_closure)]
        self.snapshot(|db| jobs::jobs_in_flight(db))
    }

    fn throughput(
        &mut self,
        window: std::time::Duration,
        bucket: std::time::Duration,
    ) -> Result<crate::store::Throughput> {
        self.read(|db| {
            let now: i64 = db.query_one(READ_NOW, &[])?.try_get(0)?;
            let (since, bucket_ms, count) = crate::store::Throughput::bounds(now, window, bucket);
            let rows = db.query(THROUGHPUT, &[&since, &bucket_ms])?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Step<Vec<(i64, i64, i64)>>>()?;
            Ok(crate::store::Throughput::from_rows(
                now, bucket_ms, count, rows,
            ))
        })
    }

    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>> {
        let channel = self.channel.clone();
        let dead = [JobState::Dead];
        self.write(|db| control::retry_in(db, ids, &dead, job::after_dlq_retry, &channel))
    }

    fn retry(&mut self, ids: Option<&[String]>, states: &[JobState]) -> Result<Vec<String>> {
        let channel = self.channel.clone();
        self.write(|db| control::retry_in(db, ids, states, job::after_retry, &channel))
    }

    fn cancel(&mut self, ids: &[String]) -> Result<Vec<(String, Cancel)>> {
        let channel = self.channel.clone();
        self.write(|db| control::cancel_in(db, ids, &channel))
    }

    fn clean(&mut self, request: &CleanRequest) -> Result<Cleaned> {
        self.write(|db| control::clean_in(db, request))
    }

    fn output(&mut self, job_id: &str, lease_token: i64, from: u64) -> Result<OutputRead> {
        self.read(|db| output::read(db, job_id, lease_token, from))
    }

    fn register_workers(&mut self, workers: &[WorkerInfo]) -> Result<()> {
        self.write(|db| workers::register_workers(db, workers))
    }

    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()> {
        self.write(|db| workers::end_workers(db, ids, state))
    }

    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>> {
        self.read(|db| workers::list_workers(db, include_ended))
    }

    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>> {
        let channel = self.channel.clone();
        self.write(|db| workers::request_stop_in(db, host, stop, &channel))
    }

    fn exchange(&mut self, ex: &Exchange<'_>) -> Result<ExchangeReply> {
        if !ex.writes() {
            // Only the stop and cancel requests to read: no transaction, no write, so
            // wake-ups caused by our own commits cause no more commits.
            return self.read(|db| {
                let stop = match ex.process {
                    Some(process) => exchange::read_stop(db, process)?,
                    None => StopRequest::None,
                };
                let cancel = if ex.check_cancels {
                    exchange::read_cancels(db)?
                } else {
                    Vec::new()
                };
                Ok(ExchangeReply {
                    stop,
                    cancel,
                    ..ExchangeReply::default()
                })
            });
        }
        let channel = self.channel.clone();
        self.write(|db| exchange::exchange_in(db, ex, &channel))
    }

    fn running_jobs(&mut self) -> Result<Vec<RunningJob>> {
        self.read(workers::running_jobs)
    }

    fn reconcile(&mut self, workers: &[String], leases: &[Lease]) -> Result<LeaseCheck> {
        self.read(|db| workers::reconcile(db, workers, leases))
    }

    fn export(&mut self, state: Option<JobState>, emit: Emit<'_>) -> Result<()> {
        let conn = self.conn()?;
        let result = transfer::export_rows(&mut conn.client, state.map(JobState::as_str), emit);
        result.map_err(|e| self.failure(e))
    }

    fn import(&mut self, jobs: &[JobRecord]) -> Result<()> {
        let channel = self.channel.clone();
        self.write(|db| transfer::import_in(db, jobs, &channel))
    }

    fn queues(&mut self) -> Result<Vec<QueueRow>> {
        self.roll_if_due()?;
        #[allow(clippy::redundant_closure)] // as in `counts`
        self.snapshot(|db| schedule::queues(db))
    }

    fn set_queue(&mut self, name: &str, change: QueueChange) -> Result<()> {
        let channel = self.channel.clone();
        self.write(|db| schedule::set_queue_in(db, name, change, &channel))
    }

    // Recurring jobs (cron)

    fn cron_add(&mut self, entry: &NewCronEntry) -> Result<Option<CronEntry>> {
        let channel = self.channel.clone();
        self.write(|db| cron::add_in(db, entry, &channel))
    }

    fn cron_list(&mut self) -> Result<Vec<CronEntry>> {
        self.read(cron::list)
    }

    fn cron_remove(&mut self, name: &str) -> Result<bool> {
        self.read(|db| cron::remove(db, name))
    }

    fn cron_set_paused(&mut self, name: &str, paused: bool) -> Result<Option<CronEntry>> {
        let channel = self.channel.clone();
        self.write(|db| cron::set_paused_in(db, name, paused, &channel))
    }

    fn cron_fire(&mut self) -> Result<CronFired> {
        let (now, earliest) = self.read(cron::earliest)?;
        if earliest.is_none_or(|at| at > now) {
            return Ok(CronFired {
                next_due_in: super::cron::due_in(earliest, now),
                ..CronFired::default()
            });
        }
        let channel = self.channel.clone();
        self.write(|db| cron::fire_in(db, &channel))
    }

    fn stats(&mut self, request: &super::stats::StatsRequest) -> Result<super::stats::StatsRaw> {
        self.snapshot(|db| stats::stats(db, request))
    }

    fn metrics(&mut self) -> Result<super::stats::MetricsRaw> {
        self.roll_if_due()?;
        self.snapshot(stats::metrics)
    }
}

use super::millis;

/// Quotes an identifier (schema names are validated, this is belt and braces).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Replaces anything but letters, digits, `-`, `_` and `.` so the name is one safe
/// path component.
fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert_eq!(listen::channel_name("queuectl"), "queuectl_queuectl");
        assert_eq!(listen::channel_name(&"s".repeat(63)).len(), 63);
        assert_eq!(safe_file_name("pg-h/x:1-d b-s"), "pg-h_x_1-d_b-s");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
