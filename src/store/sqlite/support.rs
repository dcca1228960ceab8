//! What every part of the SQLite store shares: reading a row into a job or an
//! attempt, the store's sibling files and their removal, the local clock, and what a
//! SQLite error means for users (busy, full disk). Kept apart from `mod.rs`, which
//! holds the store itself and its transactions.
//!
//! Invariant: every rusqlite error a user can see goes through [`db_error`], which
//! keeps it as the source and names the fix where there is one.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{ErrorCode, Row};

use super::{wake, wal};
use crate::error::{InputError, StoreError};
use crate::job::Job;
use crate::store::rows::{self, Columns};
use crate::store::{AttemptRecord, Result};

/// [`rows::job_from_row`] as a plain function of any row, as rusqlite's row callbacks
/// want it.
pub(super) fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    rows::job_from_row(r)
}

/// [`rows::attempt_from_row`], likewise.
pub(super) fn attempt_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<AttemptRecord> {
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

    fn flag(&self, at: usize) -> rusqlite::Result<bool> {
        self.get(at)
    }

    fn invalid(&self, at: usize, problem: InputError) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, problem.into())
    }
}

/// Deletes a store's files: the database, its WAL and shared-memory index, and its
/// spool directory (see [`crate::store::remove_scratch`]).
pub(in crate::store) fn remove_files(path: &Path) -> Result<()> {
    let gone = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io(
            format!("could not delete the scratch store {}", path.display()),
            e,
        )),
        _ => Ok(()),
    };
    gone(fs::remove_dir_all(sibling(path, ".spool")))?;
    // The store first: a worker's doorbell watcher that sees its doorbell go then
    // finds the store gone too, and does not create the doorbell again.
    for file in [
        path.to_owned(),
        wal::wal_path(path),
        sibling(path, "-shm"),
        wake::doorbell_path(path),
    ] {
        gone(fs::remove_file(file))?;
    }
    Ok(())
}

/// The file or directory named after the store's file plus `suffix`.
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether SQLite answered "busy" or "locked": another connection holds the lock.
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(super) fn db_error(e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process held the store for too long, try again"
        }
        Some(ErrorCode::DiskFull) => "; free some disk space",
        _ => "",
    };
    StoreError::unavailable_because(format!("SQLite error: {e}{hint}"), e)
}
