//! Making a file a queuectl store: creating it private, telling a queuectl store
//! from any other file, and migrating its schema.
//!
//! Invariants kept here:
//! - The file is created 0600 (inside a directory created 0700) before SQLite opens
//!   it, so no other user can ever read it.
//! - `PRAGMA application_id` marks the file as queuectl's and `PRAGMA user_version`
//!   counts the [`MIGRATIONS`] applied; files of other applications and stores of a
//!   newer queuectl are refused and left as they were found.
//! - Migrations run in one `BEGIN IMMEDIATE` transaction that re-checks every
//!   decision, so processes opening a brand-new file at once migrate it once.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{BUSY_TIMEOUT, SqliteStore, access, db_error, is_busy, wal};
use crate::error::StoreError;
use crate::file_trust;
use crate::store::{IfMissing, Result};

/// `PRAGMA application_id`: marks a file as a queuectl store ("QCTL").
const APPLICATION_ID: i64 = 0x5143_544C;

/// Migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    include_str!("0001_init.sql"),
    include_str!("0002_control.sql"),
    include_str!("0003_schedule.sql"),
    include_str!("0004_attempt_seq.sql"),
    include_str!("0005_stats.sql"),
    include_str!("0006_completed_rollup.sql"),
    include_str!("0007_layout.sql"),
];

/// Whether the file holds any schema at all: a file without our `application_id`
/// may still be migrated if it is empty.
const HAS_SCHEMA: &str = "SELECT count(*) > 0 FROM sqlite_schema";

impl SqliteStore {
    /// Creates or upgrades the schema. Several processes may open a brand-new file
    /// at once: every decision is re-checked inside one `BEGIN IMMEDIATE`
    /// transaction, and the steps that SQLite answers with "busy" at once (the
    /// switch to WAL) are retried until [`BUSY_TIMEOUT`].
    pub(super) fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let (app_id, version) =
            retry_busy(|| read_identity(&self.conn)).map_err(|e| open_error(&path, e))?;
        if app_id == APPLICATION_ID && version == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        check_identity(&path, app_id, version)?;
        if self.read_only {
            return Err(access::read_only_error(
                &path,
                &format!(
                    "and its schema (version {version}) needs upgrading to version {} first, \
                     which only a queuectl that can write it can do",
                    MIGRATIONS.len()
                ),
            ));
        }
        retry_busy(|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (app_id, version) = read_identity(&tx)?;
            // Anything but a fresh or older queuectl file is refused below, after
            // this transaction, by the same checks.
            let foreign = app_id != APPLICATION_ID && tx.query_row(HAS_SCHEMA, [], |r| r.get(0))?;
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
}

/// The file's `application_id` and schema version. Two plain pragmas rather than one
/// `SELECT` over the pragma table functions: they read the file header without
/// parsing the schema or creating virtual tables, which matters to every short
/// command.
pub(super) fn read_identity(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
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

/// Creates the store file 0600 (and missing directories 0700) before SQLite opens it,
/// so no other user can ever read it, not even for an instant. An existing store,
/// its `-wal` and `-shm` files and its directory must pass [`file_trust`]'s checks
/// (ours, not writable by others, not a link), or nothing is opened. A missing store
/// is created only if `if_missing` says so; otherwise it is reported
/// ([`access::missing`]) and nothing at all is created.
pub(super) fn create_private_file(path: &Path, if_missing: IfMissing) -> Result<()> {
    let untrusted = |e: file_trust::Untrusted| StoreError::BadLocation(e.0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(StoreError::BadLocation(format!(
                "{} is a directory, not a queuectl store; give a file path with --db",
                path.display()
            )));
        }
        Ok(_) => {
            file_trust::check_directory(dir).map_err(untrusted)?;
            file_trust::check_own(path, "the store").map_err(untrusted)?;
            for companion in [wal::wal_path(path), wal::shm_path(path)] {
                file_trust::check_own(&companion, "the store's file").map_err(untrusted)?;
            }
            return Ok(());
        }
        Err(e) if e.kind() == ErrorKind::NotFound && if_missing == IfMissing::Refuse => {
            return Err(access::missing(path));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::BadLocation(format!(
                "cannot use {}: {e}",
                path.display()
            )));
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::BadLocation(format!("cannot create {}: {e}", dir.display())))?;
    file_trust::check_directory(dir).map_err(untrusted)?;
    // A dangling link where the store should be: refused, never created through.
    file_trust::check_own(path, "the store").map_err(untrusted)?;
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

fn not_a_store(path: &Path) -> StoreError {
    StoreError::BadLocation(format!(
        "{} is not a queuectl database; point --db at a queuectl store or a new file",
        path.display()
    ))
}

/// The error for a failure to open `path`: a file that is no database, or one we
/// may not open, is a wrong location rather than an unavailable store.
pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_a_store(path),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::BadLocation(format!("cannot open {}: {e}", path.display()))
        }
        _ => db_error(e),
    }
}
