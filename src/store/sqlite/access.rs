//! Who may do what with the store's file: opening a store this user can only read,
//! and the errors for a store that is read-only or missing.
//!
//! Invariants kept here:
//! - A store this user may read but not write (a read-only file system or mount,
//!   file modes, an immutable file) opens read-only: reading commands work, and
//!   every write is refused before it starts, naming the path and the reason
//!   ([`read_only_error`]), instead of SQLite's `disk I/O error` or `attempt to
//!   write a readonly database`.
//! - A WAL-mode file is read through its `-wal` and `-shm` files, which SQLite
//!   cannot create in a read-only directory. Only when there is no `-wal` file (so
//!   every committed transaction is in the main file) is the file opened
//!   `immutable`, which reads it without either; with a `-wal` file the store is
//!   read through it or not at all, never past it (that would show old data).
//! - A reading command creates nothing: [`missing`] is its answer to a store that
//!   does not exist.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{schema, wal};
use crate::error::StoreError;
use crate::store::Result;

/// The answer of a reading command to a store that does not exist.
pub(super) fn missing(path: &Path) -> StoreError {
    StoreError::Missing(format!(
        "no queuectl store at {}; `queuectl init` creates one there (so does any command \
         that writes, such as `enqueue`), or give another with --db",
        path.display()
    ))
}

/// The refusal of a write to a store opened read-only: names the path, why this
/// user cannot write it, and `then` (what follows for the user).
pub(super) fn read_only_error(path: &Path, then: &str) -> StoreError {
    StoreError::ReadOnly(format!(
        "cannot write to the store {}: {}; {then}",
        path.display(),
        why_read_only(path)
    ))
}

/// What a refused write tells the user to do.
pub(super) const READS_STILL_WORK: &str = "commands that only read it (status, list, show, \
     logs, stats, export) still work; to change it, make it writable or give a store you can \
     write with --db";

/// Why SQLite opened `path` read-only: the first of the store file, its directory
/// (where the `-wal` and `-shm` files are made) and those two files that this
/// process may not write, as the system words it ("Read-only file system",
/// "Permission denied", "Operation not permitted" for an immutable file).
fn why_read_only(path: &Path) -> String {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let wal = wal::wal_path(path);
    let shm = wal::shm_path(path);
    let checks: [(&Path, &str); 4] = [
        (path, "the file"),
        (dir, "its directory"),
        (&wal, "its -wal file"),
        (&shm, "its -shm file"),
    ];
    for (file, what) in checks {
        match writable(file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                return "it is on a read-only file system".to_owned();
            }
            Err(e) => return format!("{what} is not writable by this user ({e})"),
        }
    }
    "SQLite could only open it read-only".to_owned()
}

/// Whether this process may write `path`, as the kernel answers `access(W_OK)` for
/// the effective user (root included: a read-only mount or an immutable file stops
/// it too).
fn writable(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let status = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens the store file (which exists): read-write if this user may, else
/// read-only, as SQLite does by itself. Returns the connection and whether it is
/// read-only. `check` is the first read; when a read-only connection cannot do it
/// because the `-shm` file cannot be made, the file is opened `immutable` if there
/// is no `-wal` file, and refused naming the problem if there is one (see the
/// module docs).
pub(super) fn connect(
    path: &Path,
    check: impl Fn(&Connection) -> rusqlite::Result<()>,
) -> Result<(Connection, bool)> {
    let opened = |e| schema::open_error(path, e);
    let conn = Connection::open(path).map_err(opened)?;
    if !conn.is_readonly(rusqlite::MAIN_DB).map_err(opened)? {
        return Ok((conn, false));
    }
    match check(&conn) {
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
            drop(conn);
            if wal::wal_path(path).exists() {
                return Err(StoreError::ReadOnly(format!(
                    "cannot read the store {}: {}, and its -wal file cannot be read without \
                     the -shm file SQLite would have to create beside it; run any queuectl \
                     command on it once where it can be written, which makes that file",
                    path.display(),
                    why_read_only(path)
                )));
            }
            let conn = Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(opened)?;
            Ok((conn, true))
        }
        Err(e) => Err(opened(e)),
        Ok(()) => Ok((conn, true)),
    }
}

/// `file:PATH?mode=ro&immutable=1`, with the characters a URI gives meaning to
/// percent-encoded (<https://sqlite.org/uri.html>).
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            b'?' | b'#' | b'%' | b'&' | b'=' | 0..=0x20 | 0x7f..=0xff => {
                uri.push_str(&format!("%{byte:02X}"));
            }
            _ => uri.push(char::from(byte)),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_immutable_uri_escapes_what_a_uri_reads() {
        assert_eq!(
            immutable_uri(Path::new("/tmp/a b/q?#%.db")),
            "file:/tmp/a%20b/q%3F%23%25.db?mode=ro&immutable=1"
        );
        assert_eq!(
            immutable_uri(Path::new("rel/é.db")),
            "file:rel/%C3%A9.db?mode=ro&immutable=1"
        );
    }
}
