//! The PostgreSQL store: the same queue shared by workers on many machines.
//!
//! This module owns everything PostgreSQL-specific: parsing `postgres://` URLs,
//! connecting (the password comes from the URL, `PGPASSWORD` or the `.pgpass` file, as
//! with psql), the schema and its migrations, the SQL of every [`Store`] operation, and
//! LISTEN/NOTIFY wake-ups.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

use super::rows::{
    Columns, JOB_COLUMN_COUNT, attempt_columns, attempt_from_row, job_columns, job_from_row,
    qualified,
};
use super::{
    AttemptRecord, Counts, Emit, Exchange, ExchangeReply, Finished, JobRecord, Lease, RecordStream,
    Result, RunningJob, StopRequest, Store, Wake, WorkerInfo, WorkerRow, WorkerState,
};
use crate::config::Config;
use crate::error::{InputError, StoreError};
use crate::job::{self, AttemptOutcome, Job, JobState, NewJob};

/// Migrations, applied in order; the `schema_version` row counts the applied ones.
const MIGRATIONS: &[&str] = &[include_str!("postgres/0001_init.sql")];

/// First key of the migration advisory lock ("QCTL"); the second is the schema's hash,
/// so queues in different schemas do not wait for each other.
const MIGRATION_LOCK: i32 = 0x5143_544C;

/// How long connecting may take: a CLI command that cannot reach the database must
/// fail within 5 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Jobs per INSERT statement when enqueuing: large batches go in array-sized chunks,
/// so 100k jobs are a few statements, not 100k round trips.
const ENQUEUE_CHUNK: usize = 5000;

/// Rows fetched per round trip by `export`, which reads through a portal so that
/// neither side holds the whole result.
const EXPORT_BATCH: i32 = 1000;

/// How often an idle LISTEN connection is probed: a half-open TCP connection would
/// otherwise wait for notifications forever.
const LISTEN_PROBE: Duration = Duration::from_secs(30);
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Retries of a transaction PostgreSQL aborted to break a deadlock.
const DEADLOCK_RETRIES: u32 = 3;

/// A parsed `postgres://` URL. The password stays inside and is never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// The URL as given, minus the `schema` parameter.
    url: String,
    pub schema: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

impl PgLocation {
    pub fn parse(text: &str, schema: Option<&str>) -> Result<PgLocation> {
        let bad = |why: &str| {
            StoreError::BadLocation(format!(
                "invalid PostgreSQL URL {}: {why}; expected postgres://user@host:port/dbname",
                redact(text)
            ))
        };
        let (base, query) = match text.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (text, None),
        };
        let mut url_schema = None;
        let mut kept = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("schema", value)) => url_schema = Some(value.to_owned()),
                _ => kept.push(pair),
            }
        }
        let schema = schema
            .map(str::to_owned)
            .or(url_schema)
            .unwrap_or_else(|| "queuectl".to_owned());
        if schema.is_empty()
            || schema.len() > 63
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad(
                "the schema must be 1-63 letters, digits or underscores, not starting with a digit",
            ));
        }
        let rest = base
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("missing ://"))?;
        let (authority, dbname) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let user = userinfo.split(':').next().unwrap_or_default().to_owned();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => (
                h.to_owned(),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (hostport.to_owned(), 5432),
        };
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(PgLocation {
            url,
            schema,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            dbname: dbname.to_owned(),
        })
    }

    /// The same database with a schema named after this one and `tag`, cut to
    /// PostgreSQL's 63-byte limit.
    pub fn scratch_beside(&self, tag: &str) -> PgLocation {
        let suffix = format!("_bench_{tag}");
        let keep = 63usize.saturating_sub(suffix.len()).min(self.schema.len());
        PgLocation {
            schema: format!("{}{suffix}", &self.schema[..keep]),
            ..self.clone()
        }
    }

    /// `postgres://user@host:port/db (schema s)`, never with the password.
    pub fn describe(&self) -> String {
        format!(
            "postgres://{}{}:{}/{} (schema {})",
            if self.user.is_empty() {
                String::new()
            } else {
                format!("{}@", self.user)
            },
            self.host,
            self.port,
            self.dbname,
            self.schema
        )
    }

    /// `host:port`, for messages.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The connection URL for the driver (may hold a password: never print it).
    pub fn connection_url(&self) -> &str {
        &self.url
    }
}

/// Replaces the password in a URL-like string with `***`.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => text.to_owned(),
    }
}

/// An open connection and the statements prepared on it.
struct Conn {
    client: Client,
    stmts: HashMap<&'static str, Statement>,
}

/// A driver error becomes [`StoreError::Unavailable`] with the driver's error kept as
/// its source: [`PgStore::failure`] later words it for users (host, scrubbed of any
/// password) and the retry and duplicate-id checks look at the source's SQLSTATE.
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::unavailable_because(error_text(&e), e)
    }
}

/// The driver's error behind `e`, if the driver raised it (rather than a queue rule
/// such as a duplicate id or a job that is not dead).
fn driver_error(e: &StoreError) -> Option<&postgres::Error> {
    match e {
        StoreError::Unavailable {
            source: Some(source),
            ..
        } => source.downcast_ref::<postgres::Error>(),
        _ => None,
    }
}

/// Whether `e` is the driver reporting that a row broke a unique constraint.
fn is_unique_violation(e: &StoreError) -> bool {
    driver_error(e).and_then(postgres::Error::code) == Some(&SqlState::UNIQUE_VIOLATION)
}

/// One step of work against the database: a queue rule's error, or the driver's.
type Step<T> = Result<T>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A client (or transaction) plus the connection's statement cache: every statement
/// is prepared once per connection, then each call is a single round trip.
struct Db<'a, C> {
    client: &'a mut C,
    stmts: &'a mut HashMap<&'static str, Statement>,
}

impl<C: GenericClient> Db<'_, C> {
    fn stmt(&mut self, sql: &'static str) -> Step<Statement> {
        if let Some(stmt) = self.stmts.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.stmts.insert(sql, stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Step<Vec<Row>> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query(&stmt, params)?)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Step<Row> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query_one(&stmt, params)?)
    }

    fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> Step<Option<Row>> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query_opt(&stmt, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Step<u64> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.execute(&stmt, params)?)
    }
}

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
    pub fn open(location: &PgLocation) -> Result<PgStore> {
        let mut store = PgStore {
            location: location.clone(),
            config: client_config(location)?,
            channel: channel_name(&location.schema),
            conn: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Drops this store's schema with everything in it, and this host's spool
    /// directory for it (see [`super::remove_scratch`]).
    pub fn drop_schema(mut self) -> Result<()> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&self.location.schema)
        );
        let conn = self.conn()?;
        let result = conn.client.batch_execute(&sql);
        result.map_err(|e| self.failure(e.into()))?;
        let spool = self.spool_dir();
        match std::fs::remove_dir_all(&spool) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(
                format!("could not delete {}", spool.display()),
                e,
            )),
            _ => Ok(()),
        }
    }

    fn migrate(&mut self) -> Result<()> {
        // Fast path, one round trip: the schema exists and is current.
        let found = self.read(|db| {
            match db
                .client
                .query_opt("SELECT version FROM schema_version", &[])
            {
                Ok(row) => Ok(Some(row.map_or(Ok(0), |r| r.try_get::<_, i64>(0))?)),
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })?;
        let supported = MIGRATIONS.len() as i64;
        match found {
            Some(v) if v == supported => Ok(()),
            Some(v) if v > supported => Err(StoreError::TooNew {
                found: v,
                supported,
            }),
            _ => {
                let schema = self.location.schema.clone();
                let describe = self.location.describe();
                self.write(|db| migrate_locked(db, &schema, &describe))
            }
        }
    }

    /// The open connection, reconnecting if there is none or it broke.
    fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = connect(&self.config, &self.location)?;
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

    fn scrub(&self, message: String) -> String {
        scrub_password(message, self.config.get_password())
    }
}

/// Runs `f` inside a transaction on `conn` and commits.
fn in_transaction<T>(
    conn: &mut Conn,
    f: &mut impl FnMut(&mut Db<'_, Transaction<'_>>) -> Step<T>,
) -> Step<T> {
    let mut tx = conn.client.transaction()?;
    let value = f(&mut Db {
        client: &mut tx,
        stmts: &mut conn.stmts,
    })?;
    tx.commit()?;
    Ok(value)
}

/// Streams `export`: one statement (so one snapshot) read through a portal,
/// [`EXPORT_BATCH`] rows per round trip. Never retried: part of it may already be
/// printed.
fn export_rows(client: &mut Client, state: Option<&str>, emit: Emit<'_>) -> Step<()> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let sql = format!(
        "SELECT {}, {} FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id \
         WHERE $1::text IS NULL OR j.state = $1 ORDER BY j.seq, a.lease_token",
        qualified("j", job_columns!()),
        qualified("a", attempt_columns!()),
    );
    let portal = tx.bind(sql.as_str(), &[&state])?;
    let mut records = RecordStream::new(emit);
    loop {
        let rows = tx.query_portal(&portal, EXPORT_BATCH)?;
        for row in &rows {
            let attempt = || match row.try_get::<_, Option<i64>>(JOB_COLUMN_COUNT)? {
                Some(_) => attempt_from_row(row, JOB_COLUMN_COUNT).map(Some),
                None => Ok(None),
            };
            if records
                .row(row.try_get(0)?, || job_from_row(row), attempt)?
                .is_break()
            {
                return Ok(());
            }
        }
        if rows.len() < EXPORT_BATCH as usize {
            break;
        }
    }
    records.finish();
    tx.commit()?;
    Ok(())
}

/// Creates or upgrades the schema. The advisory lock serialises concurrent first
/// starts; everything is re-checked under it, since another process may have
/// migrated while we waited.
fn migrate_locked(db: &mut Db<'_, Transaction<'_>>, schema: &str, describe: &str) -> Step<()> {
    db.client.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&MIGRATION_LOCK, &schema],
    )?;
    db.client.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(schema)
    ))?;
    let row = db.client.query_one(
        "SELECT count(*) FILTER (WHERE tablename = 'schema_version') > 0, count(*) > 0 \
         FROM pg_tables WHERE schemaname = $1",
        &[&schema],
    )?;
    let (has_version, has_tables): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !has_version && has_tables {
        return Err(StoreError::BadLocation(format!(
            "schema {schema} of {describe} holds tables but is not a queuectl schema; \
             choose another with ?schema=NAME or --schema"
        )));
    }
    let version: i64 = if has_version {
        let row = db
            .client
            .query_opt("SELECT version FROM schema_version", &[])?;
        row.map_or(Ok(0), |r| r.try_get(0))?
    } else {
        0
    };
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for sql in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
        db.client.batch_execute(sql)?;
    }
    db.client.execute(
        "INSERT INTO schema_version (version) VALUES ($1) \
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        &[&supported],
    )?;
    Ok(())
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
            .spawn(move || listen_forever(&config, &channel, &wake))
            .map_err(|e| StoreError::io("cannot start a thread", e))?;
        Ok(())
    }

    fn settings(&mut self) -> Result<BTreeMap<String, String>> {
        self.read(read_settings)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(())
        })
    }

    fn enqueue(&mut self, jobs: &[NewJob]) -> Result<i64> {
        let channel = self.channel.clone();
        self.write(|db| {
            let default_retries = Config::from_stored(&read_settings(db)?).max_retries;
            let mut now = None;
            for chunk in jobs.chunks(ENQUEUE_CHUNK) {
                now = Some(insert_jobs(db, chunk, default_retries)?);
            }
            let now = match now {
                Some(now) => now,
                None => return Ok(db.query_one("SELECT now_ms()", &[])?.try_get(0)?),
            };
            notify(db, &channel)?;
            Ok(now)
        })
    }

    fn job(&mut self, id: &str) -> Result<Option<Job>> {
        self.read(|db| {
            let row = db.query_opt(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    ", (SELECT output_tail FROM attempts a WHERE a.job_id = j.id \
                     ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = $1"
                ),
                &[&id],
            )?;
            let Some(row) = row else { return Ok(None) };
            let mut job = job_from_row(&row)?;
            job.output_tail = row.try_get(JOB_COLUMN_COUNT)?;
            Ok(Some(job))
        })
    }

    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>> {
        self.read(|db| {
            let rows = db.query(
                concat!(
                    "SELECT ",
                    attempt_columns!(),
                    " FROM attempts WHERE job_id = $1 ORDER BY lease_token"
                ),
                &[&id],
            )?;
            rows.iter().map(|r| attempt_from_row(r, 0)).collect()
        })
    }

    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>> {
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.read(|db| {
            let rows = match state {
                // Waiting jobs are listed in the order they will run, as on SQLite.
                Some(state @ (JobState::Pending | JobState::Failed)) => db.query(
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs WHERE state IN ('pending', 'failed') AND state = $1 \
                         ORDER BY next_run_at, seq LIMIT $2"
                    ),
                    &[&state.as_str(), &limit],
                )?,
                Some(state) => db.query(
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs WHERE state = $1 ORDER BY seq LIMIT $2"
                    ),
                    &[&state.as_str(), &limit],
                )?,
                None => db.query(
                    concat!(
                        "SELECT ",
                        job_columns!(),
                        " FROM jobs ORDER BY seq LIMIT $1"
                    ),
                    &[&limit],
                )?,
            };
            rows.iter().map(job_from_row).collect()
        })
    }

    fn counts(&mut self) -> Result<Counts> {
        self.read(|db| {
            let row = db.query_one(
                "SELECT now_ms(), (SELECT min(next_run_at) FROM jobs WHERE state = 'pending')",
                &[],
            )?;
            let mut counts = Counts {
                now: row.try_get(0)?,
                oldest_pending_at: row.try_get(1)?,
                ..Counts::default()
            };
            for row in db.query("SELECT state, count(*) FROM jobs GROUP BY state", &[])? {
                let state: String = row.try_get(0)?;
                if let Ok(state) = state.parse::<JobState>() {
                    counts.by_state.insert(state, row.try_get(1)?);
                }
            }
            Ok(counts)
        })
    }

    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>> {
        let channel = self.channel.clone();
        self.write(|db| {
            let retried = retry_dead_in(db, ids)?;
            if !retried.is_empty() {
                notify(db, &channel)?;
            }
            Ok(retried)
        })
    }

    fn register_workers(&mut self, workers: &[WorkerInfo]) -> Result<()> {
        let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
        let hosts: Vec<&str> = workers.iter().map(|w| w.host.as_str()).collect();
        let pids: Vec<i64> = workers.iter().map(|w| w.pid).collect();
        let starts: Vec<i64> = workers.iter().map(|w| w.pid_start).collect();
        self.write(|db| {
            // Like SQLite's INSERT OR REPLACE: a reused id starts over as a new worker.
            db.execute(
                "INSERT INTO workers (id, host, pid, pid_start, started_at, heartbeat_at) \
                 SELECT t.id, t.host, t.pid, t.pid_start, now_ms(), now_ms() \
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                 AS t(id, host, pid, pid_start) \
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                 pid_start = excluded.pid_start, started_at = excluded.started_at, \
                 heartbeat_at = excluded.heartbeat_at, stop_requested = 0, ended_at = NULL, \
                 end_state = NULL",
                &[&ids, &hosts, &pids, &starts],
            )?;
            Ok(())
        })
    }

    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()> {
        self.write(|db| {
            db.execute(
                "UPDATE workers SET ended_at = now_ms(), end_state = $2 \
                 WHERE id = ANY($1) AND ended_at IS NULL",
                &[&ids, &state.as_str()],
            )?;
            Ok(())
        })
    }

    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>> {
        self.read(|db| {
            let lease = millis(Config::from_stored(&read_settings(db)?).lease_timeout);
            // Ended workers are never live: leave them in the database unless asked.
            let rows = db.query(
                "SELECT w.id, w.host, w.pid, w.pid_start, w.started_at, w.heartbeat_at, \
                 w.stop_requested, w.end_state, \
                 (SELECT j.id FROM jobs j WHERE j.worker_id = w.id AND j.state = 'processing' \
                 LIMIT 1), w.heartbeat_at < now_ms() - $1 \
                 FROM workers w WHERE $2 OR w.ended_at IS NULL ORDER BY w.started_at, w.id",
                &[&lease, &include_ended],
            )?;
            let all = rows.iter().map(worker_from_row).collect::<Step<Vec<_>>>()?;
            Ok(all
                .into_iter()
                .filter(|w| include_ended || w.state.is_live())
                .collect())
        })
    }

    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>> {
        let channel = self.channel.clone();
        self.write(|db| {
            let lease = millis(Config::from_stored(&read_settings(db)?).lease_timeout);
            let rows = db.query(
                "UPDATE workers SET stop_requested = greatest(stop_requested, $1) \
                 WHERE ended_at IS NULL AND heartbeat_at >= now_ms() - $2 \
                 AND ($3::text IS NULL OR host = $3) RETURNING id",
                &[&stop.code(), &lease, &host],
            )?;
            let ids = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<Vec<String>, _>>()?;
            if !ids.is_empty() {
                // Idle workers on every host notice at once instead of at their next poll.
                notify(db, &channel)?;
            }
            Ok(ids)
        })
    }

    fn exchange(&mut self, ex: &Exchange<'_>) -> Result<ExchangeReply> {
        if !ex.writes() {
            // Only the stop request to read: no transaction, no write, so wake-ups
            // caused by our own commits cause no more commits.
            return self.read(|db| {
                let stop = match ex.process {
                    Some(process) => read_stop(db, process)?,
                    None => StopRequest::None,
                };
                Ok(ExchangeReply {
                    stop,
                    ..ExchangeReply::default()
                })
            });
        }
        let channel = self.channel.clone();
        self.write(|db| exchange_in(db, ex, &channel))
    }

    fn running_jobs(&mut self) -> Result<Vec<RunningJob>> {
        self.read(|db| {
            let rows = db.query(
                "SELECT j.id, j.lease_token, j.attempts, j.interruptions, \
                 coalesce(j.lease_expires_at, 0) < now_ms(), w.id, w.host, w.pid, w.pid_start \
                 FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id \
                 WHERE j.state = 'processing'",
                &[],
            )?;
            rows.iter().map(running_from_row).collect()
        })
    }

    fn export(&mut self, state: Option<JobState>, emit: Emit<'_>) -> Result<()> {
        let conn = self.conn()?;
        let result = export_rows(&mut conn.client, state.map(JobState::as_str), emit);
        result.map_err(|e| self.failure(e))
    }

    fn import(&mut self, jobs: &[JobRecord]) -> Result<()> {
        let channel = self.channel.clone();
        self.write(|db| {
            for chunk in jobs.chunks(ENQUEUE_CHUNK) {
                import_chunk(db, chunk)?;
            }
            if !jobs.is_empty() {
                notify(db, &channel)?;
            }
            Ok(())
        })
    }
}

/// The body of one worker round trip, in one transaction, in SQLite's order: record
/// finished runs, renew leases, heartbeat and read stop requests, then claim.
fn exchange_in(
    db: &mut Db<'_, Transaction<'_>>,
    ex: &Exchange<'_>,
    channel: &str,
) -> Step<ExchangeReply> {
    let lease_ms = millis(ex.lease_timeout);
    let mut reply = ExchangeReply::default();
    let requeued = record_finished(db, ex.finished, &mut reply.rejected)?;
    reassign(db, ex.reassign)?;
    reply.lost = renew(db, ex.renew, lease_ms)?;
    if let Some(process) = ex.process {
        if ex.beat {
            db.execute(
                "UPDATE workers SET heartbeat_at = now_ms() \
                 WHERE host = $1 AND pid = $2 AND ended_at IS NULL",
                &[&process.host, &process.pid],
            )?;
        }
        reply.stop = read_stop(db, process)?;
    }
    if !ex.claim_for.is_empty() {
        reply.claimed = claim(db, ex.claim_for, lease_ms)?;
    }
    if reply.claimed.len() < ex.claim_for.len() {
        let row = db.query_one(
            "SELECT min(next_run_at) - now_ms() FROM jobs WHERE state IN ('pending', 'failed')",
            &[],
        )?;
        let due: Option<i64> = row.try_get(0)?;
        reply.next_due_in = due.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }
    if requeued {
        // A recovered job is claimable at once: wake idle workers everywhere.
        notify(db, channel)?;
    }
    Ok(reply)
}

/// Records finished runs in one statement, each fenced like SQLite's
/// `record_finished`: only while the job is still `processing` under that lease (and,
/// for recovery, only once the lease expired). Runs not recorded go to `rejected`.
/// Returns whether a recorded run put its job back to `pending`.
fn record_finished(
    db: &mut Db<'_, Transaction<'_>>,
    finished: &[Finished],
    rejected: &mut Vec<Lease>,
) -> Step<bool> {
    if finished.is_empty() {
        return Ok(false);
    }
    // A lease reported twice is recorded once; the copy is rejected, as the second
    // of two sequential writes would be.
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(finished.len());
    for f in finished {
        if seen.insert(&f.lease) {
            batch.push(f);
        } else {
            rejected.push(f.lease.clone());
        }
    }
    let ids: Vec<&str> = batch.iter().map(|f| f.lease.job_id.as_str()).collect();
    let tokens: Vec<i64> = batch.iter().map(|f| f.lease.token).collect();
    let states: Vec<&str> = batch.iter().map(|f| f.transition.state.as_str()).collect();
    let attempts: Vec<i64> = batch.iter().map(|f| f.transition.attempts).collect();
    let interruptions: Vec<i64> = batch.iter().map(|f| f.transition.interruptions).collect();
    let run_after: Vec<i64> = batch
        .iter()
        .map(|f| millis(f.transition.run_after))
        .collect();
    let exit_codes: Vec<Option<i64>> = batch.iter().map(|f| f.transition.exit_code).collect();
    let last_errors: Vec<Option<&str>> = batch
        .iter()
        .map(|f| f.transition.last_error.as_deref())
        .collect();
    let only_expired: Vec<bool> = batch.iter().map(|f| f.only_if_expired).collect();
    let workers: Vec<Option<&str>> = batch.iter().map(|f| f.worker_id.as_deref()).collect();
    let outcomes: Vec<&str> = batch.iter().map(|f| f.outcome.as_str()).collect();
    let errors: Vec<Option<&str>> = batch
        .iter()
        .map(|f| match f.outcome {
            AttemptOutcome::Succeeded => None,
            _ => f.transition.last_error.as_deref(),
        })
        .collect();
    let tails: Vec<Option<&str>> = batch.iter().map(|f| f.output_tail.as_deref()).collect();
    let rows = db.query(
        "WITH f AS ( \
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
                $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::boolean[], \
                $10::text[], $11::text[], $12::text[], $13::text[]) \
            AS f(job_id, token, state, attempts, interruptions, run_after, exit_code, \
                last_error, only_if_expired, worker_id, outcome, error, output_tail) \
         ), done AS ( \
            UPDATE jobs j SET state = f.state, attempts = f.attempts, \
                interruptions = f.interruptions, next_run_at = now_ms() + f.run_after, \
                exit_code = f.exit_code, last_error = f.last_error, finished_at = now_ms(), \
                updated_at = now_ms(), lease_expires_at = NULL \
            FROM f \
            WHERE j.id = f.job_id AND j.lease_token = f.token AND j.state = 'processing' \
                AND (NOT f.only_if_expired OR coalesce(j.lease_expires_at, 0) < now_ms()) \
            RETURNING j.id, j.lease_token, j.started_at, j.state \
         ), recorded AS ( \
            INSERT INTO attempts (job_id, lease_token, worker_id, started_at, finished_at, \
                outcome, exit_code, error, output_tail) \
            SELECT d.id, d.lease_token, f.worker_id, d.started_at, now_ms(), f.outcome, \
                f.exit_code, f.error, f.output_tail \
            FROM done d JOIN f ON f.job_id = d.id AND f.token = d.lease_token \
            WHERE f.outcome <> 'released' \
            ON CONFLICT (job_id, lease_token) DO UPDATE SET worker_id = excluded.worker_id, \
                started_at = excluded.started_at, finished_at = excluded.finished_at, \
                outcome = excluded.outcome, exit_code = excluded.exit_code, \
                error = excluded.error, output_tail = excluded.output_tail \
         ) \
         SELECT id, lease_token, state FROM done",
        &[
            &ids,
            &tokens,
            &states,
            &attempts,
            &interruptions,
            &run_after,
            &exit_codes,
            &last_errors,
            &only_expired,
            &workers,
            &outcomes,
            &errors,
            &tails,
        ],
    )?;
    let mut recorded = HashSet::new();
    let mut requeued = false;
    for row in &rows {
        recorded.insert((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?));
        requeued |= row.try_get::<_, &str>(2)? == JobState::Pending.as_str();
    }
    for f in batch {
        if !recorded.contains(&(f.lease.job_id.clone(), f.lease.token)) {
            rejected.push(f.lease.clone());
        }
    }
    Ok(requeued)
}

/// Renews the leases of running jobs in one statement; returns those that could not
/// be renewed because the job is no longer ours.
/// Records which worker runs a job that moved between slots of one process.
fn reassign(db: &mut Db<'_, Transaction<'_>>, moved: &[(Lease, String)]) -> Step<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moved.iter().map(|(l, _)| l.job_id.as_str()).collect();
    let tokens: Vec<i64> = moved.iter().map(|(l, _)| l.token).collect();
    let workers: Vec<&str> = moved.iter().map(|(_, w)| w.as_str()).collect();
    db.execute(
        "UPDATE jobs j SET worker_id = r.worker \
         FROM unnest($1::text[], $2::bigint[], $3::text[]) AS r(id, token, worker) \
         WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing'",
        &[&ids, &tokens, &workers],
    )?;
    Ok(())
}

fn renew(db: &mut Db<'_, Transaction<'_>>, held: &[Lease], lease_ms: i64) -> Step<Vec<Lease>> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = held.iter().map(|l| l.job_id.as_str()).collect();
    let tokens: Vec<i64> = held.iter().map(|l| l.token).collect();
    let rows = db.query(
        "UPDATE jobs j SET lease_expires_at = now_ms() + $3 \
         FROM unnest($1::text[], $2::bigint[]) AS r(id, token) \
         WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing' \
         RETURNING j.id, j.lease_token",
        &[&ids, &tokens, &lease_ms],
    )?;
    let mut renewed = HashSet::new();
    for row in &rows {
        renewed.insert((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?));
    }
    Ok(held
        .iter()
        .filter(|l| !renewed.contains(&(l.job_id.clone(), l.token)))
        .cloned()
        .collect())
}

/// Claims up to one job per worker in `workers`, in one statement. The materialized
/// CTE is an optimisation fence: the planner cannot turn it into a join that locks
/// and updates more rows than the LIMIT. SKIP LOCKED lets concurrent claimers pass
/// each other's rows instead of queueing behind them. Each picked row is numbered so
/// it gets its own worker from the array.
fn claim(
    db: &mut Db<'_, Transaction<'_>>,
    workers: &[String],
    lease_ms: i64,
) -> Step<Vec<(String, Job)>> {
    let limit = i64::try_from(workers.len()).unwrap_or(i64::MAX);
    let rows = db.query(
        concat!(
            "WITH picked AS MATERIALIZED ( \
                SELECT seq FROM jobs \
                WHERE state IN ('pending', 'failed') AND next_run_at <= now_ms() \
                ORDER BY next_run_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED \
             ), numbered AS ( \
                SELECT seq, row_number() OVER () AS rn FROM picked \
             ) \
             UPDATE jobs j SET state = 'processing', lease_token = j.lease_token + 1, \
                lease_expires_at = now_ms() + $2, worker_id = ($3::text[])[n.rn], \
                started_at = now_ms(), updated_at = now_ms() \
             FROM numbered n WHERE j.seq = n.seq \
             RETURNING ",
            job_columns!()
        ),
        &[&limit, &lease_ms, &workers],
    )?;
    rows.iter()
        .map(|row| {
            let job = job_from_row(row)?;
            let worker = job.worker_id.clone().unwrap_or_default();
            Ok((worker, job))
        })
        .collect()
}

/// The strongest stop request addressed to a process's live workers.
fn read_stop<C: GenericClient>(
    db: &mut Db<'_, C>,
    process: &super::ProcessKey,
) -> Step<StopRequest> {
    let row = db.query_one(
        "SELECT coalesce(max(stop_requested), 0) FROM workers \
         WHERE host = $1 AND pid = $2 AND ended_at IS NULL",
        &[&process.host, &process.pid],
    )?;
    Ok(StopRequest::from_code(row.try_get(0)?))
}

/// Inserts one chunk of jobs in one statement, in the given order (`seq` follows it);
/// returns the database time used as their `created_at`.
fn insert_jobs(
    db: &mut Db<'_, Transaction<'_>>,
    jobs: &[NewJob],
    default_retries: i64,
) -> Step<i64> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let commands: Vec<&str> = jobs.iter().map(|j| j.command.as_str()).collect();
    let cwds: Vec<&str> = jobs.iter().map(|j| j.cwd.as_str()).collect();
    let retries: Vec<i64> = jobs
        .iter()
        .map(|j| j.max_retries.unwrap_or(default_retries))
        .collect();
    let result = db.query_one(
        "WITH new AS ( \
            INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, updated_at, \
                next_run_at) \
            SELECT t.id, t.command, t.cwd, 'pending', t.max_retries, now_ms(), now_ms(), \
                now_ms() \
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY \
                AS t(id, command, cwd, max_retries, ord) \
            ORDER BY t.ord \
            RETURNING 1 \
         ) SELECT now_ms(), count(*) FROM new",
        &[&ids, &commands, &cwds, &retries],
    );
    match result {
        Ok(row) => Ok(row.try_get(0)?),
        Err(e) if is_unique_violation(&e) => {
            let id = driver_error(&e)
                .and_then(duplicate_id)
                .unwrap_or_else(|| ids.first().copied().unwrap_or_default().to_owned());
            Err(StoreError::DuplicateId(id))
        }
        Err(e) => Err(e),
    }
}

/// Inserts one chunk of imported jobs and their attempts: two statements, in the
/// given order (`seq` follows it). A duplicate id fails with its name.
fn import_chunk(db: &mut Db<'_, Transaction<'_>>, chunk: &[JobRecord]) -> Step<()> {
    let jobs: Vec<&Job> = chunk.iter().map(|r| &r.job).collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let commands: Vec<&str> = jobs.iter().map(|j| j.command.as_str()).collect();
    let cwds: Vec<&str> = jobs.iter().map(|j| j.cwd.as_str()).collect();
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    let attempts: Vec<i64> = jobs.iter().map(|j| j.attempts).collect();
    let retries: Vec<i64> = jobs.iter().map(|j| j.max_retries).collect();
    let interruptions: Vec<i64> = jobs.iter().map(|j| j.interruptions).collect();
    let created: Vec<i64> = jobs.iter().map(|j| j.created_at).collect();
    let updated: Vec<i64> = jobs.iter().map(|j| j.updated_at).collect();
    let next_run: Vec<i64> = jobs.iter().map(|j| j.next_run_at).collect();
    let tokens: Vec<i64> = jobs.iter().map(|j| j.lease_token).collect();
    let expires: Vec<Option<i64>> = jobs.iter().map(|j| j.lease_expires_at).collect();
    let workers: Vec<Option<&str>> = jobs.iter().map(|j| j.worker_id.as_deref()).collect();
    let started: Vec<Option<i64>> = jobs.iter().map(|j| j.started_at).collect();
    let finished: Vec<Option<i64>> = jobs.iter().map(|j| j.finished_at).collect();
    let exit_codes: Vec<Option<i64>> = jobs.iter().map(|j| j.exit_code).collect();
    let errors: Vec<Option<&str>> = jobs.iter().map(|j| j.last_error.as_deref()).collect();
    let inserted = db.execute(
        "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, interruptions, \
            created_at, updated_at, next_run_at, lease_token, lease_expires_at, worker_id, \
            started_at, finished_at, exit_code, last_error) \
         SELECT t.id, t.command, t.cwd, t.state, t.attempts, t.max_retries, t.interruptions, \
            t.created_at, t.updated_at, t.next_run_at, t.lease_token, t.lease_expires_at, \
            t.worker_id, t.started_at, t.finished_at, t.exit_code, t.last_error \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
            $11::bigint[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[], \
            $16::bigint[], $17::text[]) WITH ORDINALITY \
            AS t(id, command, cwd, state, attempts, max_retries, interruptions, created_at, \
            updated_at, next_run_at, lease_token, lease_expires_at, worker_id, started_at, \
            finished_at, exit_code, last_error, ord) \
         ORDER BY t.ord",
        &[
            &ids,
            &commands,
            &cwds,
            &states,
            &attempts,
            &retries,
            &interruptions,
            &created,
            &updated,
            &next_run,
            &tokens,
            &expires,
            &workers,
            &started,
            &finished,
            &exit_codes,
            &errors,
        ],
    );
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            let id = driver_error(&e)
                .and_then(duplicate_id)
                .unwrap_or_else(|| ids.first().copied().unwrap_or_default().to_owned());
            return Err(StoreError::DuplicateId(id));
        }
        Err(e) => return Err(e),
    }
    let all: Vec<(&str, &AttemptRecord)> = chunk
        .iter()
        .flat_map(|r| r.attempts.iter().map(move |a| (r.job.id.as_str(), a)))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<&str> = all.iter().map(|(id, _)| *id).collect();
    let tokens: Vec<i64> = all.iter().map(|(_, a)| a.lease_token).collect();
    let workers: Vec<Option<&str>> = all.iter().map(|(_, a)| a.worker_id.as_deref()).collect();
    let started: Vec<Option<i64>> = all.iter().map(|(_, a)| a.started_at).collect();
    let finished: Vec<i64> = all.iter().map(|(_, a)| a.finished_at).collect();
    let outcomes: Vec<&str> = all.iter().map(|(_, a)| a.outcome.as_str()).collect();
    let exit_codes: Vec<Option<i64>> = all.iter().map(|(_, a)| a.exit_code).collect();
    let errors: Vec<Option<&str>> = all.iter().map(|(_, a)| a.error.as_deref()).collect();
    let tails: Vec<Option<&str>> = all.iter().map(|(_, a)| a.output_tail.as_deref()).collect();
    db.execute(
        "INSERT INTO attempts (job_id, lease_token, worker_id, started_at, finished_at, \
            outcome, exit_code, error, output_tail) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
            $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::text[])",
        &[
            &job_ids,
            &tokens,
            &workers,
            &started,
            &finished,
            &outcomes,
            &exit_codes,
            &errors,
            &tails,
        ],
    )?;
    Ok(())
}

/// The id named by a unique violation's detail: `Key (id)=(job1) already exists.`
fn duplicate_id(e: &postgres::Error) -> Option<String> {
    let detail = e.as_db_error()?.detail()?;
    let rest = detail.strip_prefix("Key (id)=(")?;
    Some(rest.strip_suffix(") already exists.")?.to_owned())
}

/// `dlq retry`: locks the jobs, lets [`job::after_dlq_retry`] decide for each (ids in
/// the order given, so the first refused one is the one reported, as on SQLite) and
/// applies every transition in one statement. All or nothing.
fn retry_dead_in(db: &mut Db<'_, Transaction<'_>>, ids: Option<&[String]>) -> Step<Vec<String>> {
    let mut decided: Vec<(String, job::Transition)> = Vec::new();
    match ids {
        Some(ids) => {
            let rows = db.query(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE id = ANY($1) FOR UPDATE"
                ),
                &[&ids],
            )?;
            let jobs = rows.iter().map(job_from_row).collect::<Step<Vec<Job>>>()?;
            let by_id: HashMap<&str, &Job> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
            for id in ids {
                let found = by_id.get(id.as_str()).copied();
                decided.push((id.clone(), job::after_dlq_retry(id, found)?));
            }
        }
        None => {
            let rows = db.query(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE state = 'dead' ORDER BY seq FOR UPDATE"
                ),
                &[],
            )?;
            for row in &rows {
                let dead = job_from_row(row)?;
                let transition = job::after_dlq_retry(&dead.id, Some(&dead))?;
                decided.push((dead.id, transition));
            }
        }
    }
    if decided.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = decided.iter().map(|(id, _)| id.as_str()).collect();
    let states: Vec<&str> = decided.iter().map(|(_, t)| t.state.as_str()).collect();
    let attempts: Vec<i64> = decided.iter().map(|(_, t)| t.attempts).collect();
    let interruptions: Vec<i64> = decided.iter().map(|(_, t)| t.interruptions).collect();
    let run_after: Vec<i64> = decided.iter().map(|(_, t)| millis(t.run_after)).collect();
    let exit_codes: Vec<Option<i64>> = decided.iter().map(|(_, t)| t.exit_code).collect();
    let last_errors: Vec<Option<&str>> = decided
        .iter()
        .map(|(_, t)| t.last_error.as_deref())
        .collect();
    db.execute(
        "UPDATE jobs j SET state = t.state, attempts = t.attempts, \
            interruptions = t.interruptions, next_run_at = now_ms() + t.run_after, \
            exit_code = t.exit_code, last_error = t.last_error, updated_at = now_ms() \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
            $6::bigint[], $7::text[]) \
            AS t(id, state, attempts, interruptions, run_after, exit_code, last_error) \
         WHERE j.id = t.id AND j.state = 'dead'",
        &[
            &ids,
            &states,
            &attempts,
            &interruptions,
            &run_after,
            &exit_codes,
            &last_errors,
        ],
    )?;
    Ok(decided.into_iter().map(|(id, _)| id).collect())
}

/// Wakes LISTENing workers on every host; delivered when the transaction commits.
fn notify<C: GenericClient>(db: &mut Db<'_, C>, channel: &str) -> Step<()> {
    db.execute("SELECT pg_notify($1, '')", &[&channel])?;
    Ok(())
}

fn read_settings<C: GenericClient>(db: &mut Db<'_, C>) -> Step<BTreeMap<String, String>> {
    let rows = db.query("SELECT key, value FROM settings", &[])?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

impl Columns for Row {
    type Error = StoreError;

    fn int(&self, at: usize) -> Step<i64> {
        Ok(self.try_get(at)?)
    }

    fn opt_int(&self, at: usize) -> Step<Option<i64>> {
        Ok(self.try_get(at)?)
    }

    fn text(&self, at: usize) -> Step<String> {
        Ok(self.try_get(at)?)
    }

    fn opt_text(&self, at: usize) -> Step<Option<String>> {
        Ok(self.try_get(at)?)
    }

    fn invalid(&self, at: usize, problem: InputError) -> StoreError {
        StoreError::unavailable(format!(
            "the store holds a value this queuectl cannot read in column {at}: {problem}; \
             is it from a newer release?"
        ))
    }
}

fn worker_from_row(r: &Row) -> Step<WorkerRow> {
    let job: Option<String> = r.try_get(8)?;
    let end_state: Option<String> = r.try_get(7)?;
    let stop = StopRequest::from_code(r.try_get(6)?);
    let stale: bool = r.try_get(9)?;
    Ok(WorkerRow {
        info: WorkerInfo {
            id: r.try_get(0)?,
            host: r.try_get(1)?,
            pid: r.try_get(2)?,
            pid_start: r.try_get(3)?,
        },
        state: WorkerState::derive(end_state.as_deref(), stale, stop, job.is_some()),
        job,
        started_at: r.try_get(4)?,
        heartbeat_at: r.try_get(5)?,
    })
}

fn running_from_row(r: &Row) -> Step<RunningJob> {
    let worker_id: Option<String> = r.try_get(5)?;
    let worker = match worker_id {
        Some(id) => Some(WorkerInfo {
            id,
            host: r.try_get(6)?,
            pid: r.try_get(7)?,
            pid_start: r.try_get(8)?,
        }),
        None => None,
    };
    Ok(RunningJob {
        lease: Lease {
            job_id: r.try_get(0)?,
            token: r.try_get(1)?,
        },
        attempts: r.try_get(2)?,
        interruptions: r.try_get(3)?,
        lease_expired: r.try_get(4)?,
        worker,
    })
}

/// The driver config for `location`: the URL, a password from `PGPASSWORD` or the
/// password file when the URL has none (the Rust driver reads neither itself), and
/// timeouts so that an unreachable or silently vanished server is noticed.
fn client_config(location: &PgLocation) -> Result<postgres::Config> {
    let mut config = postgres::Config::from_str(location.connection_url()).map_err(|e| {
        StoreError::BadLocation(format!(
            "invalid PostgreSQL URL {}: {}",
            location.describe(),
            scrub_password(
                error_text(&e),
                password_in_url(location.connection_url())
                    .as_deref()
                    .map(str::as_bytes)
            )
        ))
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host(&location.host);
    }
    if config.get_application_name().is_none() {
        config.application_name("queuectl");
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        // Unacknowledged writes give up after this long instead of the kernel's ~15 min.
        .tcp_user_timeout(Duration::from_secs(30));
    if config.get_password().is_none()
        && let Some(password) = find_password(&config, location)
    {
        config.password(password);
    }
    Ok(config)
}

/// `PGPASSWORD`, else the matching line of `PGPASSFILE` or `~/.pgpass`, as libpq does.
fn find_password(config: &postgres::Config, location: &PgLocation) -> Option<String> {
    if let Some(password) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Some(password);
    }
    let file = match std::env::var_os("PGPASSFILE").filter(|v| !v.is_empty()) {
        Some(file) => PathBuf::from(file),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = fs::metadata(&file).ok()?;
    // libpq ignores a password file others can read; so do we, and say why.
    if meta.permissions().mode() & 0o077 != 0 {
        crate::log::warn(&format!(
            "password file {} has group or world access; ignoring it (chmod 0600 it)",
            file.display()
        ));
        return None;
    }
    let contents = fs::read_to_string(&file).ok()?;
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())?;
    let dbname = config.get_dbname().unwrap_or(&user);
    let port = config.get_ports().first().copied().unwrap_or(location.port);
    pgpass_lookup(&contents, &location.host, port, dbname, &user)
}

/// The password of the first `host:port:database:user:password` line matching the
/// connection (`*` matches anything; `\` escapes `:` and `\`; `#` starts a comment).
fn pgpass_lookup(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    contents
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(pgpass_fields)
        .filter(|fields| fields.len() >= 5)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|((text, wildcard), want)| *wildcard || text == want)
        })
        .map(|fields| fields[4].0.clone())
}

/// Splits a password file line on unescaped `:`; each field comes with whether it
/// was a bare `*` (an escaped `\*` is a literal asterisk).
fn pgpass_fields(line: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let (mut text, mut raw) = (String::new(), String::new());
    let mut chars = line.trim_end_matches('\r').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw.push(c);
                if let Some(next) = chars.next() {
                    text.push(next);
                    raw.push(next);
                }
            }
            ':' => {
                let wildcard = raw == "*";
                fields.push((std::mem::take(&mut text), wildcard));
                raw.clear();
            }
            _ => {
                text.push(c);
                raw.push(c);
            }
        }
    }
    let wildcard = raw == "*";
    fields.push((text, wildcard));
    fields
}

/// Opens a connection with `search_path` set to the queue's schema.
fn connect(config: &postgres::Config, location: &PgLocation) -> Result<Client> {
    let unreachable = |e: postgres::Error| {
        let message = scrub_password(
            format!(
                "cannot connect to PostgreSQL at {}: {}",
                location.host_port(),
                error_text(&e)
            ),
            config.get_password(),
        );
        StoreError::unavailable_because(message, e)
    };
    let mut client = config.connect(NoTls).map_err(unreachable)?;
    client
        .batch_execute(&format!(
            "SET search_path TO {}",
            quote_ident(&location.schema)
        ))
        .map_err(unreachable)?;
    Ok(client)
}

/// The LISTEN thread: delivers notifications to `wake` for as long as the process
/// lives, reconnecting with backoff. After a reconnect it wakes once, since
/// notifications sent while it was away are lost.
fn listen_forever(config: &postgres::Config, channel: &str, wake: &Wake) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    let mut reconnecting = false;
    loop {
        let listening = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {}", quote_ident(channel)))?;
            Ok(client)
        });
        if let Ok(mut client) = listening {
            backoff = LISTEN_BACKOFF_MIN;
            if reconnecting {
                wake();
            }
            pump(&mut client, wake);
        }
        reconnecting = true;
        thread::sleep(backoff);
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// Calls `wake` for each notification until the connection breaks.
fn pump(client: &mut Client, wake: &Wake) {
    loop {
        if !deliver(client, wake) {
            return;
        }
        if client.is_closed() || client.is_valid(CONNECT_TIMEOUT).is_err() {
            return;
        }
    }
}

/// Delivers notifications until none came for [`LISTEN_PROBE`] (returns true) or the
/// connection failed (returns false).
fn deliver(client: &mut Client, wake: &Wake) -> bool {
    let mut notifications = client.notifications();
    let mut iter = notifications.timeout_iter(LISTEN_PROBE);
    loop {
        match iter.next() {
            Ok(Some(_)) => wake(),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// The NOTIFY channel for a schema. Channel names are identifiers, which PostgreSQL
/// cuts at 63 bytes; two long schema names sharing a prefix merely share wake-ups.
fn channel_name(schema: &str) -> String {
    let mut name = format!("queuectl_{schema}");
    name.truncate(63);
    name
}

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

/// Removes a known password from a message, in case a driver message ever quotes it.
fn scrub_password(message: String, password: Option<&[u8]>) -> String {
    match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message,
    }
}

/// The password part of a URL's user info, if any (percent-encoding left as is).
fn password_in_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_owned())
}

/// The driver's message with its causes ("error connecting to server" alone does not
/// say whether the connection was refused or timed out).
fn error_text(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Errors after which the connection cannot be trusted: I/O and protocol failures
/// (no SQLSTATE), connection exceptions (08) and operator intervention (57, e.g. the
/// server shutting down).
fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57"),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_matches_fields_and_wildcards() {
        let file = "# comment\n\
                    otherhost:5432:*:*:nope\n\
                    db.example:*:queue:alice:first\n\
                    db.example:5432:queue:alice:second\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(file, "db.example", 5432, "queue", "alice").as_deref(),
            Some("first"),
            "the first matching line wins"
        );
        assert_eq!(
            pgpass_lookup(file, "db.example", 5432, "queue", "bob").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u:p\n", "h", 2, "d", "u"), None);
        assert_eq!(
            pgpass_lookup("h:1:d:u\n", "h", 1, "d", "u"),
            None,
            "too few fields"
        );
        assert_eq!(pgpass_lookup("", "h", 1, "d", "u"), None);
    }

    #[test]
    fn pgpass_unescapes_colons_and_backslashes() {
        let file = "h\\:x:5432:d:u:pa\\:ss\\\\word\r\n";
        assert_eq!(
            pgpass_lookup(file, "h:x", 5432, "d", "u").as_deref(),
            Some("pa:ss\\word")
        );
        // An escaped asterisk is a literal, not a wildcard.
        assert_eq!(pgpass_lookup("\\*:1:d:u:p", "h", 1, "d", "u"), None);
        assert_eq!(
            pgpass_lookup("\\*:1:d:u:p", "*", 1, "d", "u").as_deref(),
            Some("p")
        );
        // The password ends at the next unescaped colon, as in libpq.
        assert_eq!(
            pgpass_lookup("h:1:d:u:p:extra", "h", 1, "d", "u").as_deref(),
            Some("p")
        );
    }

    #[test]
    fn url_parsing_keeps_the_password_out_of_descriptions() {
        let loc = PgLocation::parse(
            "postgres://bob:s3cret@db.example:6543/jobs?schema=q2&sslmode=disable",
            None,
        )
        .expect("valid URL");
        assert_eq!(loc.host, "db.example");
        assert_eq!(loc.port, 6543);
        assert_eq!(loc.user, "bob");
        assert_eq!(loc.dbname, "jobs");
        assert_eq!(loc.schema, "q2");
        assert!(!loc.describe().contains("s3cret"));
        assert_eq!(
            loc.connection_url(),
            "postgres://bob:s3cret@db.example:6543/jobs?sslmode=disable"
        );
        assert_eq!(
            password_in_url(loc.connection_url()).as_deref(),
            Some("s3cret")
        );
        let config = client_config(&loc).expect("driver accepts the URL");
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_dbname(), Some("jobs"));
    }

    #[test]
    fn schema_option_overrides_the_url_and_is_validated() {
        let loc = PgLocation::parse("postgresql://u@h/d?schema=a", Some("b")).expect("valid");
        assert_eq!(loc.schema, "b");
        assert_eq!(loc.port, 5432);
        assert_eq!(
            PgLocation::parse("postgres://u@h/d", None)
                .expect("valid")
                .schema,
            "queuectl"
        );
        for bad in ["x;drop", "1abc", "", "a\"b"] {
            assert!(
                PgLocation::parse("postgres://u@h/d", Some(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(redact("postgres://u:pw@h:5/d"), "postgres://u:***@h:5/d");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("/tmp/queue.db"), "/tmp/queue.db");
        assert_eq!(
            scrub_password("auth failed for pw".into(), Some(b"pw")),
            "auth failed for ***"
        );
        assert_eq!(scrub_password("kept".into(), None), "kept");
        let err =
            PgLocation::parse("postgres://u:topsecret@h:notaport/d", None).expect_err("bad port");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(channel_name("queuectl"), "queuectl_queuectl");
        assert_eq!(channel_name(&"s".repeat(63)).len(), 63);
        assert_eq!(safe_file_name("pg-h/x:1-d b-s"), "pg-h_x_1-d_b-s");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
