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

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::rows::{self, Columns, JOB_COLUMN_COUNT, attempt_columns, job_columns, qualified};
use super::{
    AttemptRecord, Counts, Emit, Exchange, ExchangeReply, Finished, JobRecord, Lease, OpenFor,
    RecordStream, Result, RunningJob, StopRequest, Store, Wake, WorkerInfo, WorkerRow, WorkerState,
};
use crate::config::Config;
use crate::error::InputError;
use crate::error::StoreError;
use crate::job::{self, AttemptOutcome, Job, JobState, NewJob};

/// `PRAGMA application_id`: marks a file as a queuectl store ("QCTL").
const APPLICATION_ID: i64 = 0x5143_544C;

/// Migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[include_str!("sqlite/0001_init.sql")];

/// How long a statement waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

/// The job columns every statement that returns jobs selects (see [`super::rows`]).
const JOB_COLUMNS: &str = job_columns!();

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// `PRAGMA data_version` when last asked: it changes only when another
    /// connection commits.
    data_version: i64,
    purpose: OpenFor,
    /// Holds the file alone (see [`take_if_alone`]), and so looks after the WAL.
    alone: bool,
    /// Whether this connection has written (and so decided whether to start the
    /// WAL over).
    wal_checked: bool,
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (0600, in a 0700 directory) and
    /// migrating it as needed. Refuses directories, files that are not queuectl
    /// stores and stores from a newer queuectl.
    pub fn open(path: &Path, purpose: OpenFor) -> Result<SqliteStore> {
        create_private_file(path)?;
        let wal_existed = wal_path(path).exists();
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        let alone = purpose == OpenFor::Command
            && wal_existed
            && take_if_alone(&conn).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;

        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            data_version: 0,
            purpose,
            alone,
            wal_checked: false,
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
        store
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;

        if !wal_existed {
            // SQLite is built without its per-connection directory sync (see
            // .cargo/config.toml): make a new store file and WAL file durable here.
            sync_parent_dir(path)?;
        }
        Ok(store)
    }

    /// Creates or upgrades the schema. Several processes may open a brand-new file
    /// at once: every decision is re-checked inside one `BEGIN IMMEDIATE`
    /// transaction, and the steps that SQLite answers with "busy" at once (the
    /// switch to WAL) are retried until [`BUSY_TIMEOUT`].
    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let (app_id, version) =
            retry_busy(|| read_identity(&self.conn)).map_err(|e| open_error(&path, e))?;
        if app_id == APPLICATION_ID && version == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        check_identity(&path, app_id, version)?;
        retry_busy(|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (app_id, version) = read_identity(&tx)?;
            // Anything but a fresh or older queuectl file is refused below, after
            // this transaction, by the same checks.
            let foreign = app_id != APPLICATION_ID
                && tx.query_row("SELECT count(*) > 0 FROM sqlite_schema", [], |r| r.get(0))?;
            if foreign || check_identity(&path, app_id, version).is_err() {
                return Ok(());
            }
            for sql in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
                tx.execute_batch(sql)?;
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
            tx.commit()
        })
        .map_err(db_error)?;
        let (app_id, version) = read_identity(&self.conn).map_err(db_error)?;
        if app_id != APPLICATION_ID {
            return Err(not_a_store(&path));
        }
        check_identity(&path, app_id, version)?;
        let journal: String = retry_busy(|| {
            self.conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        })
        .map_err(db_error)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable(format!(
                "could not switch {} to WAL mode (got {journal}); is it on a network file system?",
                path.display()
            )));
        }
        Ok(())
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

    /// Before a command that holds the store alone writes, a WAL that has grown
    /// long is copied into the database (`wal_checkpoint(PASSIVE)`, which completes
    /// since nobody else reads), so that the command's own commit starts the WAL
    /// over from its first frame, overwriting the file in place. Only the
    /// connection that checkpointed can do that: a new process rebuilds the WAL
    /// index from the file and no longer knows the log was copied, so it appends.
    ///
    /// This matters because a commit must `fdatasync` the WAL: when the file grows,
    /// the new size and blocks are written and waited for too. In fresh processes
    /// on the development VM that took 0.5-0.7 ms against 0.2 ms in place, a third
    /// of a whole `enqueue` call. Only speed depends on this, so a failed
    /// checkpoint is left for the next writer.
    fn start_long_wal_over(&mut self) {
        if wal_log_reaches(&wal_path(&self.path), WAL_RESTART_FRAMES) {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }

    /// Runs `f` in one transaction. Writers must pass `Immediate` (see the module docs);
    /// `Deferred` is for transactions that only read.
    fn transact<T>(
        &mut self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<T>,
    ) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(db_error)?;
        let value = f(&tx, now_ms())?;
        tx.commit().map_err(db_error)?;
        Ok(value)
    }

    fn lease_timeout(&mut self) -> Result<Duration> {
        Ok(Config::from_stored(&self.settings()?).lease_timeout)
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
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let wal = wal_path(&self.path);
        watch_wal(&dir, wal.file_name().unwrap_or_default().into(), wake)
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
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM settings")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn enqueue(&mut self, jobs: &[NewJob]) -> Result<i64> {
        self.write(|tx, now| {
            // Read in the enqueue transaction, so a job gets the setting in force when
            // it was committed.
            let default_retries = if jobs.iter().any(|j| j.max_retries.is_none()) {
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT value FROM settings WHERE key = 'max-retries'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_error)?;
                let stored: BTreeMap<String, String> = stored
                    .map(|v| ("max-retries".to_owned(), v))
                    .into_iter()
                    .collect();
                Config::from_stored(&stored).max_retries
            } else {
                0
            };
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO jobs (id, command, cwd, state, max_retries, created_at, \
                     updated_at, next_run_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5, ?5)",
                )
                .map_err(db_error)?;
            for job in jobs {
                let max_retries = job.max_retries.unwrap_or(default_retries);
                stmt.execute(params![job.id, job.command, job.cwd, max_retries, now])
                    .map_err(|e| match e.sqlite_error_code() {
                        Some(ErrorCode::ConstraintViolation) => {
                            StoreError::DuplicateId(job.id.clone())
                        }
                        _ => db_error(e),
                    })?;
            }
            Ok(now)
        })
    }

    fn job(&mut self, id: &str) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS}, (SELECT output_tail FROM attempts a WHERE a.job_id = j.id \
             ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = ?1"
        );
        self.conn
            .query_row(&sql, [id], |row| {
                let mut job = job_from_row(row)?;
                job.output_tail = row.get(JOB_COLUMN_COUNT)?;
                Ok(job)
            })
            .optional()
            .map_err(db_error)
    }

    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "SELECT ",
                attempt_columns!(),
                " FROM attempts WHERE job_id = ?1 ORDER BY lease_token"
            ))
            .map_err(db_error)?;
        let rows = stmt
            .query_map([id], |r| attempt_from_row(r, 0))
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>> {
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        // Each state is read through its own partial index (see the schema).
        let source = match state {
            None => "jobs WHERE ?1 IS NULL ORDER BY seq",
            Some(JobState::Pending | JobState::Failed) => {
                "jobs INDEXED BY jobs_ready WHERE state IN ('pending', 'failed') \
                 AND state = ?1 ORDER BY next_run_at, seq"
            }
            Some(JobState::Processing) => {
                "jobs INDEXED BY jobs_running WHERE state = 'processing' AND state = ?1 \
                 ORDER BY seq"
            }
            Some(JobState::Dead) => {
                "jobs INDEXED BY jobs_dead WHERE state = 'dead' AND state = ?1 ORDER BY seq"
            }
            Some(JobState::Completed) => "jobs WHERE state = ?1 ORDER BY seq",
        };
        let sql = format!("SELECT {JOB_COLUMNS} FROM {source} LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_error)?;
        let rows = stmt
            .query_map(params![state.map(JobState::as_str), limit], job_from_row)
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn counts(&mut self) -> Result<Counts> {
        let now = now_ms();
        let tx = self.conn.transaction().map_err(db_error)?;
        let count = |sql: &str| -> Result<i64> {
            tx.prepare_cached(sql)
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db_error)
        };
        let waiting = "FROM jobs INDEXED BY jobs_ready WHERE state IN ('pending', 'failed')";
        let pending = count(&format!("SELECT count(*) {waiting} AND state = 'pending'"))?;
        let failed = count(&format!("SELECT count(*) {waiting} AND state = 'failed'"))?;
        let processing =
            count("SELECT count(*) FROM jobs INDEXED BY jobs_running WHERE state = 'processing'")?;
        let dead = count("SELECT count(*) FROM jobs INDEXED BY jobs_dead WHERE state = 'dead'")?;
        let total = count("SELECT count(*) FROM jobs")?;
        let oldest_pending_at: Option<i64> = tx
            .prepare_cached(&format!(
                "SELECT min(next_run_at) {waiting} AND state = 'pending'"
            ))
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(db_error)?;
        let completed = total - pending - failed - processing - dead;
        let by_state = [
            (JobState::Pending, pending),
            (JobState::Processing, processing),
            (JobState::Completed, completed),
            (JobState::Failed, failed),
            (JobState::Dead, dead),
        ]
        .into_iter()
        .collect();
        Ok(Counts {
            by_state,
            oldest_pending_at,
            now,
        })
    }

    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>> {
        self.write(|tx, now| {
            let dead: Vec<(String, job::Transition)> = match ids {
                Some(ids) => {
                    let mut read = tx
                        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
                        .map_err(db_error)?;
                    let mut retried = Vec::with_capacity(ids.len());
                    for id in ids {
                        let found = read
                            .query_row([id], job_from_row)
                            .optional()
                            .map_err(db_error)?;
                        retried.push((id.clone(), job::after_dlq_retry(id, found.as_ref())?));
                    }
                    retried
                }
                None => {
                    let mut stmt = tx
                        .prepare(&format!(
                            "SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_dead \
                             WHERE state = 'dead' ORDER BY seq"
                        ))
                        .map_err(db_error)?;
                    let rows = stmt.query_map([], job_from_row).map_err(db_error)?;
                    let jobs: Vec<Job> = rows.collect::<rusqlite::Result<_>>().map_err(db_error)?;
                    jobs.iter()
                        .map(|j| Ok((j.id.clone(), job::after_dlq_retry(&j.id, Some(j))?)))
                        .collect::<Result<_>>()?
                }
            };
            let mut apply = tx
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, attempts = ?3, interruptions = ?4, \
                     next_run_at = ?5, exit_code = ?6, last_error = ?7, updated_at = ?8 \
                     WHERE id = ?1 AND state = 'dead'",
                )
                .map_err(db_error)?;
            for (id, t) in &dead {
                apply
                    .execute(params![
                        id,
                        t.state.as_str(),
                        t.attempts,
                        t.interruptions,
                        now + millis(t.run_after),
                        t.exit_code,
                        t.last_error,
                        now
                    ])
                    .map_err(db_error)?;
            }
            Ok(dead.into_iter().map(|(id, _)| id).collect())
        })
    }

    fn register_workers(&mut self, workers: &[WorkerInfo]) -> Result<()> {
        self.write(|tx, now| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO workers (id, host, pid, pid_start, started_at, \
                     heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )
                .map_err(db_error)?;
            for w in workers {
                stmt.execute(params![w.id, w.host, w.pid, w.pid_start, now])
                    .map_err(db_error)?;
            }
            Ok(())
        })
    }

    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()> {
        self.write(|tx, now| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE workers SET ended_at = ?2, end_state = ?3 \
                     WHERE id = ?1 AND ended_at IS NULL",
                )
                .map_err(db_error)?;
            for id in ids {
                stmt.execute(params![id, now, state.as_str()])
                    .map_err(db_error)?;
            }
            Ok(())
        })
    }

    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>> {
        let stale_before = now_ms() - millis(self.lease_timeout()?);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT w.id, w.host, w.pid, w.pid_start, w.started_at, w.heartbeat_at, \
                 w.stop_requested, w.end_state, \
                 (SELECT j.id FROM jobs j INDEXED BY jobs_running \
                 WHERE j.worker_id = w.id AND j.state = 'processing' \
                 ORDER BY j.started_at LIMIT 1) \
                 FROM workers w ORDER BY w.started_at, w.id",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| {
                let job: Option<String> = r.get(8)?;
                let end_state: Option<String> = r.get(7)?;
                let heartbeat_at: i64 = r.get(5)?;
                let stop = StopRequest::from_code(r.get(6)?);
                Ok(WorkerRow {
                    info: WorkerInfo {
                        id: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        pid_start: r.get(3)?,
                    },
                    state: WorkerState::derive(
                        end_state.as_deref(),
                        heartbeat_at < stale_before,
                        stop,
                        job.is_some(),
                    ),
                    job,
                    started_at: r.get(4)?,
                    heartbeat_at,
                })
            })
            .map_err(db_error)?;
        let all: Vec<WorkerRow> = rows.collect::<rusqlite::Result<_>>().map_err(db_error)?;
        Ok(all
            .into_iter()
            .filter(|w| include_ended || w.state.is_live())
            .collect())
    }

    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>> {
        let lease = millis(self.lease_timeout()?);
        self.write(|tx, now| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE workers SET stop_requested = max(stop_requested, ?1) \
                     WHERE ended_at IS NULL AND heartbeat_at >= ?2 AND (?3 IS NULL OR host = ?3) \
                     RETURNING id",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![stop.code(), now - lease, host], |r| r.get(0))
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_error)
        })
    }

    fn exchange(&mut self, ex: &Exchange<'_>) -> Result<ExchangeReply> {
        let lease = millis(ex.lease_timeout);
        let behavior = if ex.writes() {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        self.transact(behavior, |tx, now| {
            let mut reply = ExchangeReply::default();
            for finished in ex.finished {
                if !record_finished(tx, now, finished)? {
                    reply.rejected.push(finished.lease.clone());
                }
            }
            for (lease, worker) in ex.reassign {
                tx.prepare_cached(
                    "UPDATE jobs SET worker_id = ?3 \
                     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing'",
                )
                .and_then(|mut s| s.execute(params![lease.job_id, lease.token, worker]))
                .map_err(db_error)?;
            }
            for held in ex.renew {
                let renewed = tx
                    .prepare_cached(
                        "UPDATE jobs SET lease_expires_at = ?3 \
                         WHERE id = ?1 AND lease_token = ?2 AND state = 'processing'",
                    )
                    .and_then(|mut s| s.execute(params![held.job_id, held.token, now + lease]))
                    .map_err(db_error)?;
                if renewed == 0 {
                    reply.lost.push(held.clone());
                }
            }
            if let Some(process) = ex.process {
                if ex.beat {
                    tx.prepare_cached(
                        "UPDATE workers SET heartbeat_at = ?3 \
                         WHERE host = ?1 AND pid = ?2 AND ended_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![process.host, process.pid, now]))
                    .map_err(db_error)?;
                }
                let stop: Option<i64> = tx
                    .prepare_cached(
                        "SELECT max(stop_requested) FROM workers \
                         WHERE host = ?1 AND pid = ?2 AND ended_at IS NULL",
                    )
                    .and_then(|mut s| s.query_row(params![process.host, process.pid], |r| r.get(0)))
                    .map_err(db_error)?;
                reply.stop = StopRequest::from_code(stop.unwrap_or(0));
            }
            let claim_sql = format!(
                "UPDATE jobs SET state = 'processing', lease_token = lease_token + 1, \
                 lease_expires_at = ?1 + ?2, worker_id = ?3, started_at = ?1, updated_at = ?1 \
                 WHERE seq = (SELECT seq FROM jobs INDEXED BY jobs_ready \
                 WHERE state IN ('pending', 'failed') AND next_run_at <= ?1 ORDER BY next_run_at, seq LIMIT 1) RETURNING {JOB_COLUMNS}"
            );
            for worker in ex.claim_for {
                let job = tx
                    .prepare_cached(&claim_sql)
                    .and_then(|mut s| s.query_row(params![now, lease, worker], job_from_row).optional())
                    .map_err(db_error)?;
                match job {
                    Some(job) => reply.claimed.push((worker.clone(), job)),
                    None => break,
                }
            }
            if reply.claimed.len() < ex.claim_for.len() {
                let next: Option<i64> = tx
                    .prepare_cached(
                        "SELECT min(next_run_at) FROM jobs INDEXED BY jobs_ready \
                         WHERE state IN ('pending', 'failed')",
                    )
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(db_error)?;
                reply.next_due_in =
                    next.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
            }
            Ok(reply)
        })
    }

    fn running_jobs(&mut self) -> Result<Vec<RunningJob>> {
        let now = now_ms();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT j.id, j.lease_token, j.attempts, j.interruptions, \
                 coalesce(j.lease_expires_at, 0) < ?1, w.id, w.host, w.pid, w.pid_start \
                 FROM jobs j INDEXED BY jobs_running LEFT JOIN workers w ON w.id = j.worker_id \
                 WHERE j.state = 'processing'",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map([now], |r| {
                let worker_id: Option<String> = r.get(5)?;
                let worker = match worker_id {
                    Some(id) => Some(WorkerInfo {
                        id,
                        host: r.get(6)?,
                        pid: r.get(7)?,
                        pid_start: r.get(8)?,
                    }),
                    None => None,
                };
                Ok(RunningJob {
                    lease: Lease {
                        job_id: r.get(0)?,
                        token: r.get(1)?,
                    },
                    attempts: r.get(2)?,
                    interruptions: r.get(3)?,
                    lease_expired: r.get(4)?,
                    worker,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)
    }

    fn export(&mut self, state: Option<JobState>, emit: Emit<'_>) -> Result<()> {
        // One statement: one consistent snapshot of jobs and their attempts.
        let sql = format!(
            "SELECT {}, {} \
             FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id \
             WHERE ?1 IS NULL OR j.state = ?1 ORDER BY j.seq, a.lease_token",
            qualified("j", JOB_COLUMNS),
            qualified("a", attempt_columns!()),
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_error)?;
        let mut rows = stmt
            .query([state.map(JobState::as_str)])
            .map_err(db_error)?;
        let mut records = RecordStream::new(emit);
        while let Some(row) = rows.next().map_err(db_error)? {
            let id: String = row.get(0).map_err(db_error)?;
            let attempt = || match row.get::<_, Option<i64>>(JOB_COLUMN_COUNT)? {
                Some(_) => attempt_from_row(row, JOB_COLUMN_COUNT).map(Some),
                None => Ok(None),
            };
            let flow = records
                .row(&id, || job_from_row(row), attempt)
                .map_err(db_error)?;
            if flow.is_break() {
                return Ok(());
            }
        }
        records.finish();
        Ok(())
    }

    fn import(&mut self, jobs: &[JobRecord]) -> Result<()> {
        self.write(|tx, _| {
            let mut insert_job = tx
                .prepare_cached(
                    "INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, \
                     interruptions, created_at, updated_at, next_run_at, lease_token, \
                     lease_expires_at, worker_id, started_at, finished_at, exit_code, last_error) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17)",
                )
                .map_err(db_error)?;
            let mut insert_attempt = tx
                .prepare_cached(
                    "INSERT INTO attempts (job_id, lease_token, worker_id, started_at, \
                     finished_at, outcome, exit_code, error, output_tail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(db_error)?;
            for record in jobs {
                let j = &record.job;
                insert_job
                    .execute(params![
                        j.id,
                        j.command,
                        j.cwd,
                        j.state.as_str(),
                        j.attempts,
                        j.max_retries,
                        j.interruptions,
                        j.created_at,
                        j.updated_at,
                        j.next_run_at,
                        j.lease_token,
                        j.lease_expires_at,
                        j.worker_id,
                        j.started_at,
                        j.finished_at,
                        j.exit_code,
                        j.last_error,
                    ])
                    .map_err(|e| match e.sqlite_error_code() {
                        Some(ErrorCode::ConstraintViolation) => {
                            StoreError::DuplicateId(j.id.clone())
                        }
                        _ => db_error(e),
                    })?;
                for a in &record.attempts {
                    insert_attempt
                        .execute(params![
                            j.id,
                            a.lease_token,
                            a.worker_id,
                            a.started_at,
                            a.finished_at,
                            a.outcome.as_str(),
                            a.exit_code,
                            a.error,
                            a.output_tail,
                        ])
                        .map_err(db_error)?;
                }
            }
            Ok(())
        })
    }
}

impl Drop for SqliteStore {
    /// Connections skip SQLite's checkpoint on close (see `open`), so the WAL is
    /// kept short by whoever is using it: a running worker's automatic checkpoints,
    /// and a command holding the store alone before it writes
    /// ([`SqliteStore::start_long_wal_over`]). What is left: a worker that stops
    /// with a WAL past [`WAL_TRUNCATE_BYTES`], or a command that found a long log
    /// and did not write, checkpoints and truncates it, so the next command does not
    /// re-read it all to rebuild the WAL index. Nobody waits for readers (a busy
    /// checkpoint is simply skipped), and a command beside other connections leaves
    /// the WAL to them.
    fn drop(&mut self) {
        let wal = wal_path(&self.path);
        let truncate = match self.purpose {
            OpenFor::Worker => fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES),
            // A command that wrote leaves a long log to the next writer, which starts
            // it over in place.
            OpenFor::Command => {
                self.alone && !self.wal_checked && wal_log_reaches(&wal, WAL_RESTART_FRAMES)
            }
        };
        if truncate && self.conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// See `impl Drop for SqliteStore`.
const WAL_TRUNCATE_BYTES: u64 = 128 * 1024;

/// How many frames (pages) of log make a WAL long: 32 pages of 4 KiB, about ten
/// `enqueue` commits. Every command re-reads the log since the last restart to
/// rebuild the WAL index, so a long log slows every command; starting over costs
/// one checkpoint (an `fdatasync` of the database).
const WAL_RESTART_FRAMES: u64 = 32;

/// Whether the WAL at `path` holds at least `frames` frames of its current log:
/// frame number `frames` carries the salts of the WAL header (frames left over
/// from before the log last started over carry older ones). Reads two headers of
/// the documented WAL format (<https://sqlite.org/fileformat2.html#walformat>); a
/// wrong answer can only cost speed, never data, as SQLite does the checkpoint.
fn wal_log_reaches(path: &Path, frames: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let mut header = [0u8; 32];
    let mut frame = [0u8; 24];
    if file.read_exact_at(&mut header, 0).is_err() {
        return false;
    }
    let page_size = u64::from(u32::from_be_bytes([
        header[8], header[9], header[10], header[11],
    ]));
    let offset = 32 + frames.saturating_sub(1) * (24 + page_size);
    file.read_exact_at(&mut frame, offset).is_ok() && frame[8..16] == header[16..24]
}

/// Applies one finished run if its lease still holds; returns whether it did.
fn record_finished(tx: &rusqlite::Transaction<'_>, now: i64, f: &Finished) -> Result<bool> {
    let t = &f.transition;
    let started_at: Option<Option<i64>> = tx
        .prepare_cached(
            "UPDATE jobs SET state = ?3, attempts = ?4, interruptions = ?5, next_run_at = ?6, \
             exit_code = ?7, last_error = ?8, finished_at = ?9, updated_at = ?9, \
             lease_expires_at = NULL \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'processing' \
             AND (?10 = 0 OR coalesce(lease_expires_at, 0) < ?9) RETURNING started_at",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    f.lease.job_id,
                    f.lease.token,
                    t.state.as_str(),
                    t.attempts,
                    t.interruptions,
                    now + millis(t.run_after),
                    t.exit_code,
                    t.last_error,
                    now,
                    f.only_if_expired,
                ],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db_error)?;
    let Some(started_at) = started_at else {
        return Ok(false);
    };
    if f.outcome == AttemptOutcome::Released {
        return Ok(true);
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (job_id, lease_token, worker_id, started_at, \
         finished_at, outcome, exit_code, error, output_tail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.lease.job_id,
            f.lease.token,
            f.worker_id,
            started_at,
            now,
            f.outcome.as_str(),
            t.exit_code,
            if f.outcome == AttemptOutcome::Succeeded {
                None
            } else {
                t.last_error.as_deref()
            },
            f.output_tail,
        ])
    })
    .map_err(db_error)?;
    Ok(true)
}

/// Lets a short command that finds no other connection open hold the store alone
/// for its few milliseconds: SQLite then keeps the WAL index in process memory
/// instead of resetting and rebuilding the shared `-shm` file, which saved ~0.1 ms,
/// a twentieth of an `enqueue` call. Every other connection (a worker, another
/// command) holds a shared lock on the file for as long as it is open, so the
/// attempt fails at once when the store is in use, and the command falls back to
/// normal locking. While a command holds the store, others wait on the busy timeout
/// as they would for any writer. The next connection in normal mode finds no live
/// `-shm` user and rebuilds the index from the WAL, as it always does when first.
fn take_if_alone(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    // The first read opens the WAL, which in exclusive mode takes the lock.
    match conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)) {
        Err(e) if is_busy(&e) => conn
            .pragma_update(None, "locking_mode", "NORMAL")
            .map(|()| false),
        other => other.map(|_| true),
    }
}

/// The file's `application_id` and schema version. Two plain pragmas rather than one
/// `SELECT` over the pragma table functions: they read the file header without
/// parsing the schema or creating virtual tables, which matters to every short
/// command.
fn read_identity(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let app_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((app_id, version))
}

/// Refuses files of other applications and stores of a newer queuectl.
fn check_identity(path: &Path, app_id: i64, version: i64) -> Result<()> {
    if app_id != APPLICATION_ID && app_id != 0 {
        return Err(not_a_store(path));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::TooNew {
            found: version,
            supported: MIGRATIONS.len() as i64,
        });
    }
    Ok(())
}

/// Retries `f` while SQLite answers "busy" or "locked", for up to [`BUSY_TIMEOUT`]:
/// some operations (changing the journal mode) fail at once instead of waiting on
/// the busy timeout.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Whether SQLite answered "busy" or "locked": another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// [`rows::job_from_row`] as a plain function of any row, as rusqlite's row callbacks
/// want it.
fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    rows::job_from_row(r)
}

/// [`rows::attempt_from_row`], likewise.
fn attempt_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<AttemptRecord> {
    rows::attempt_from_row(r, at)
}

impl Columns for Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, at: usize) -> rusqlite::Result<i64> {
        self.get(at)
    }

    fn opt_int(&self, at: usize) -> rusqlite::Result<Option<i64>> {
        self.get(at)
    }

    fn text(&self, at: usize) -> rusqlite::Result<String> {
        self.get(at)
    }

    fn opt_text(&self, at: usize) -> rusqlite::Result<Option<String>> {
        self.get(at)
    }

    fn invalid(&self, at: usize, problem: InputError) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, problem.into())
    }
}

/// Creates the store file 0600 (and missing directories 0700) before SQLite opens it,
/// so no other user can ever read it, not even for an instant.
fn create_private_file(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(StoreError::BadLocation(format!(
                "{} is a directory, not a queuectl store; give a file path with --db",
                path.display()
            )));
        }
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::BadLocation(format!(
                "cannot use {}: {e}",
                path.display()
            )));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                StoreError::BadLocation(format!("cannot create {}: {e}", dir.display()))
            })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::BadLocation(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Deletes a store's files: the database, its WAL and shared-memory index, and its
/// spool directory (see [`super::remove_scratch`]).
pub(super) fn remove_files(path: &Path) -> Result<()> {
    let gone = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io(
            format!("could not delete the scratch store {}", path.display()),
            e,
        )),
        _ => Ok(()),
    };
    gone(fs::remove_dir_all(sibling(path, ".spool")))?;
    for file in [wal_path(path), sibling(path, "-shm"), path.to_owned()] {
        gone(fs::remove_file(file))?;
    }
    Ok(())
}

fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// The file or directory named after the store's file plus `suffix`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// fsyncs the directory holding `path`, so newly created files in it survive a
/// power loss.
fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("cannot sync {}", dir.display()), e))
}

/// Wakes `wake` whenever the WAL file changes, that is on every commit by any
/// process. inotify costs nothing while idle, unlike a tight polling loop.
fn watch_wal(dir: &Path, wal_name: PathBuf, wake: Wake) -> Result<()> {
    let inotify = inotify::Inotify::init().map_err(|e| StoreError::io("inotify unavailable", e))?;
    inotify
        .watches()
        .add(dir, inotify::WatchMask::MODIFY | inotify::WatchMask::CREATE)
        .map_err(|e| StoreError::io(format!("cannot watch {}", dir.display()), e))?;
    thread::Builder::new()
        .name("wal-watch".into())
        .spawn(move || {
            let mut inotify = inotify;
            let mut buffer = [0u8; 4096];
            while let Ok(events) = inotify.read_events_blocking(&mut buffer) {
                let ours = events
                    .into_iter()
                    .any(|e| e.name.is_some_and(|n| Path::new(n) == wal_name));
                if ours {
                    wake();
                }
            }
        })
        .map_err(|e| StoreError::io("cannot start a thread", e))?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn not_a_store(path: &Path) -> StoreError {
    StoreError::BadLocation(format!(
        "{} is not a queuectl database; point --db at a queuectl store or a new file",
        path.display()
    ))
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_a_store(path),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::BadLocation(format!("cannot open {}: {e}", path.display()))
        }
        _ => db_error(e),
    }
}

fn db_error(e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process held the store for too long, try again"
        }
        Some(ErrorCode::DiskFull) => "; free some disk space",
        _ => "",
    };
    StoreError::unavailable_because(format!("SQLite error: {e}{hint}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locking_mode(store: &SqliteStore) -> String {
        store
            .conn
            .pragma_query_value(None, "locking_mode", |r| r.get(0))
            .expect("read locking_mode")
    }

    fn job(id: &str) -> NewJob {
        NewJob {
            id: id.into(),
            command: "true".into(),
            cwd: "/".into(),
            max_retries: None,
        }
    }

    #[test]
    fn a_command_alone_holds_the_store_and_others_find_its_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        // A store in use has a WAL file; only then may a command hold it alone.
        let mut created = SqliteStore::open(&path, OpenFor::Command).expect("create");
        assert_eq!(locking_mode(&created), "normal");
        created.enqueue(&[job("first")]).expect("first enqueue");
        drop(created);

        let mut alone = SqliteStore::open(&path, OpenFor::Command).expect("open");
        assert_eq!(locking_mode(&alone), "exclusive");
        alone.enqueue(&[job("a")]).expect("enqueue alone");
        drop(alone);

        // A worker rebuilds the shared WAL index from the WAL the command wrote.
        let mut worker = SqliteStore::open(&path, OpenFor::Worker).expect("open worker");
        assert_eq!(locking_mode(&worker), "normal");
        assert!(worker.job("a").expect("read").is_some());
    }

    /// A store in use: one job written, so it has a WAL.
    fn created(path: &Path) {
        let mut store = SqliteStore::open(path, OpenFor::Worker).expect("create");
        store.enqueue(&[job("seed")]).expect("seed");
    }

    fn wal_size(path: &Path) -> u64 {
        fs::metadata(wal_path(path)).map_or(0, |m| m.len())
    }

    #[test]
    fn commands_alone_start_a_long_wal_over_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        created(&path);
        let mut sizes = Vec::new();
        for i in 0..60 {
            let mut store = SqliteStore::open(&path, OpenFor::Command).expect("open");
            assert!(store.alone);
            store.enqueue(&[job(&format!("j{i}"))]).expect("enqueue");
            drop(store);
            sizes.push(wal_size(&path));
        }
        // Three pages per enqueue: without starting over, 60 enqueues would leave a
        // log of 180 frames. Once long, the file is reused: it neither shrinks to
        // nothing nor keeps growing.
        let frame = 24 + 4096;
        let settled = &sizes[20..];
        assert!(settled.iter().all(|&s| s > 0), "WAL sizes: {sizes:?}");
        assert!(
            settled.iter().all(|&s| s < 2 * WAL_RESTART_FRAMES * frame),
            "WAL sizes: {sizes:?}"
        );
        assert!(
            settled.windows(2).all(|w| w[0] <= w[1]),
            "WAL sizes: {sizes:?}"
        );
        let mut reader = SqliteStore::open(&path, OpenFor::Worker).expect("open worker");
        for i in 0..60 {
            assert!(
                reader.job(&format!("j{i}")).expect("read").is_some(),
                "j{i}"
            );
        }
    }

    #[test]
    fn a_command_that_only_reads_truncates_a_long_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        created(&path);
        let mut writer = SqliteStore::open(&path, OpenFor::Command).expect("open");
        assert!(writer.alone);
        for i in 0..40 {
            writer.enqueue(&[job(&format!("j{i}"))]).expect("enqueue");
        }
        drop(writer);
        assert!(wal_log_reaches(&wal_path(&path), WAL_RESTART_FRAMES));

        let mut reader = SqliteStore::open(&path, OpenFor::Command).expect("open");
        assert!(reader.job("j39").expect("read").is_some());
        drop(reader);
        assert_eq!(wal_size(&path), 0);
        let mut reader = SqliteStore::open(&path, OpenFor::Command).expect("open");
        assert!(reader.job("j39").expect("read").is_some());
    }

    #[test]
    fn a_command_shares_the_store_with_an_open_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let mut worker = SqliteStore::open(&path, OpenFor::Worker).expect("create");

        let mut command = SqliteStore::open(&path, OpenFor::Command).expect("open beside a worker");
        assert_eq!(locking_mode(&command), "normal");
        command
            .enqueue(&[job("b")])
            .expect("enqueue beside a worker");
        assert!(worker.job("b").expect("read").is_some());
        worker.enqueue(&[job("c")]).expect("worker writes too");
        assert!(command.job("c").expect("read").is_some());
    }
}
