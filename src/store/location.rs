//! Where a store lives and how it is opened: `--db` / `QUEUECTL_DB` parsed into a
//! [`Location`] (a SQLite file, or a PostgreSQL URL or libpq settings), queuectl's
//! own data directory, and [`open`], which hands back the backend behind the
//! [`Store`] trait.
//!
//! Invariants: a value that looks like a URL of another scheme is refused, never
//! taken for a file name (it would become a SQLite file named after it, password
//! and all); descriptions of a location never contain its password.

use std::path::PathBuf;

use super::{Result, Store, postgres, sqlite};
use crate::error::StoreError;

/// Where the store lives, parsed from `--db` / `QUEUECTL_DB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(postgres::PgLocation),
}

impl Location {
    /// `postgres://` and `postgresql://` URLs (the scheme in any case) and libpq
    /// key=value settings (`host=... dbname=...`) select PostgreSQL; any other
    /// `scheme://` is refused rather than taken for a file name (a mistyped URL
    /// would otherwise become a SQLite file named after it, password and all);
    /// anything else is a SQLite file path.
    pub fn parse(text: &str, schema: Option<&str>) -> Result<Location> {
        if let Some(scheme) = url_scheme(text) {
            if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
            {
                let url = format!("postgresql{}", &text[scheme.len()..]);
                return postgres::PgLocation::parse(&url, schema).map(Location::Postgres);
            }
            return Err(StoreError::BadLocation(format!(
                "unsupported store URL scheme '{scheme}://' in {}; give --db (or QUEUECTL_DB) \
                 a postgres:// URL, libpq settings such as 'host=db dbname=jobs', or a SQLite \
                 file path",
                postgres::redact(text)
            )));
        }
        if is_libpq_settings(text) {
            return postgres::PgLocation::parse_key_value(text, schema).map(Location::Postgres);
        }
        if text.is_empty() {
            return Err(StoreError::BadLocation(
                "the store path is empty; give a file path or a postgres:// URL with --db".into(),
            ));
        }
        Ok(Location::Sqlite(PathBuf::from(text)))
    }

    /// A description safe to print: never contains a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite:{}", path.display()),
            Location::Postgres(pg) => pg.describe(),
        }
    }

    /// A new store beside this one, told apart by `tag` (letters, digits and
    /// underscores): a file in the same directory, or a schema in the same database.
    /// For `bench`, which must not mix its jobs into a store in use but should still
    /// measure the same disk or server. [`remove_scratch`] deletes it.
    pub fn scratch_beside(&self, tag: &str) -> Location {
        match self {
            Location::Sqlite(path) => {
                let mut name = path.file_name().unwrap_or_default().to_owned();
                name.push(format!(".bench_{tag}"));
                Location::Sqlite(path.with_file_name(name))
            }
            Location::Postgres(pg) => Location::Postgres(pg.scratch_beside(tag)),
        }
    }
}

/// The scheme of a URL-shaped `text` (`letters://...`, RFC 3986's scheme syntax).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Whether `text` reads as libpq key=value settings: its first word is
/// `KEYWORD=` for a connection keyword libpq knows. A file path does not start so.
fn is_libpq_settings(text: &str) -> bool {
    const KEYWORDS: [&str; 12] = [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "sslmode",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "channel_binding",
    ];
    let first = text.split_whitespace().next().unwrap_or_default();
    first
        .split_once('=')
        .is_some_and(|(key, _)| KEYWORDS.contains(&key.trim()))
}

/// Deletes a store made by [`Location::scratch_beside`], with everything in it.
pub fn remove_scratch(location: &Location) -> Result<()> {
    match location {
        Location::Sqlite(path) => sqlite::remove_files(path),
        Location::Postgres(pg) => postgres::PgStore::open(pg, IfMissing::Create)?.drop_schema(),
    }
}

/// queuectl's own directory: `$QUEUECTL_HOME`, else `$XDG_DATA_HOME/queuectl`, else
/// `~/.local/share/queuectl`. The default SQLite store and host-local files live here.
pub fn data_home() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = non_empty("QUEUECTL_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(data) = non_empty("XDG_DATA_HOME") {
        return Some(PathBuf::from(data).join("queuectl"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".local/share/queuectl"))
}

/// Who opens a store, so that a backend can choose its cheapest way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFor {
    /// A short command (`enqueue`, `status`, ...) that exits within milliseconds.
    Command,
    /// A worker, which keeps its connection for as long as it runs.
    Worker,
}

/// What opening a store that does not exist yet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create it (commands that write, workers).
    Create,
    /// Refuse with [`StoreError::Missing`] and create nothing: no file, directory,
    /// `-wal`/`-shm` or PostgreSQL schema (commands that only read).
    Refuse,
}

/// Opens (and if needed migrates) the store at `location`, creating it if it is
/// missing and `if_missing` says so. A store this user may read but not write opens
/// read-only: reads work and every write fails with [`StoreError::ReadOnly`].
pub fn open(
    location: &Location,
    purpose: OpenFor,
    if_missing: IfMissing,
) -> Result<Box<dyn Store>> {
    match location {
        Location::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(
            path, purpose, if_missing,
        )?)),
        Location::Postgres(pg) => Ok(Box::new(postgres::PgStore::open(pg, if_missing)?)),
    }
}
