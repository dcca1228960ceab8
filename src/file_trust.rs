//! Whether a local file or directory can be trusted with the queue: the checks ssh's
//! `StrictModes` makes, for the SQLite store, its `-wal`/`-shm` files, the
//! directory they live in and the worker's spool.
//!
//! A queue's files decide which commands run, as whom, and what output is shown.
//! So a file that another user owns or can write, a directory others can write
//! (unless it is sticky, like `/tmp`: there only our own files' checks matter), and
//! a symbolic link where a queue file should be are refused, naming the path and the
//! fix. Invariant: these checks read the file's own metadata (`lstat`), never what a
//! link points to.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a path was refused: one line naming it and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

/// Write permission for the group or for others.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in such a directory only a file's owner may remove or rename it.
const STICKY: u32 = 0o1000;

/// The effective user id of this process.
fn me() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks a file (or directory) of the queue's own, if it exists: not a symbolic
/// link, owned by this user, not writable by group or others. `what` names it in
/// the message ("the store", "the spool").
pub fn check_own(path: &Path, what: &str) -> Result<(), Untrusted> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Untrusted(format!(
                "cannot check {what} {}: {e}; check the path and its permissions",
                path.display()
            )));
        }
    };
    if meta.file_type().is_symlink() {
        return Err(Untrusted(format!(
            "{what} {} is a symbolic link, which queuectl never follows there; remove it, or \
             give the real path with --db",
            path.display()
        )));
    }
    if meta.uid() != me() {
        return Err(Untrusted(format!(
            "{what} {} belongs to user id {}, not to you (user id {}); use a store of your \
             own with --db",
            path.display(),
            meta.uid(),
            me()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & WRITABLE_BY_OTHERS != 0 {
        return Err(Untrusted(format!(
            "{what} {} can be written by other users (mode {mode:04o}); run `chmod go-w {}` \
             if it is yours and unchanged, or use another store with --db",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Checks the directory a store lives in: others may not write it unless it is
/// sticky (then they cannot replace our files in it, which `check_own` checks).
pub fn check_directory(dir: &Path) -> Result<(), Untrusted> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) => {
            return Err(Untrusted(format!(
                "cannot check the store's directory {}: {e}; check the path and its \
                 permissions",
                dir.display()
            )));
        }
    };
    let mode = meta.mode() & 0o7777;
    if mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0 {
        return Err(Untrusted(format!(
            "the store's directory {} can be written by other users (mode {mode:04o}), who \
             could replace the store; run `chmod go-w {}`, or keep the store elsewhere with \
             --db",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn own_files_must_be_private_and_real() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("q.db");
        assert_eq!(check_own(&file, "the store"), Ok(()), "missing is fine");
        fs::write(&file, "").expect("write");
        chmod(&file, 0o600);
        assert_eq!(check_own(&file, "the store"), Ok(()));
        chmod(&file, 0o640);
        assert_eq!(check_own(&file, "the store"), Ok(()), "others may read");
        for mode in [0o660, 0o606, 0o666] {
            chmod(&file, mode);
            let err = check_own(&file, "the store").expect_err("writable by others");
            assert!(err.0.contains("chmod go-w"), "{err}");
        }
        let link = dir.path().join("link.db");
        symlink(&file, &link).expect("symlink");
        chmod(&file, 0o600);
        let err = check_own(&link, "the store").expect_err("a link");
        assert!(err.0.contains("symbolic link"), "{err}");
    }

    #[test]
    fn directories_others_can_write_must_be_sticky() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (mode, ok) in [
            (0o700, true),
            (0o755, true),
            (0o777, false),
            (0o775, false),
            (0o1777, true),
        ] {
            chmod(dir.path(), mode);
            assert_eq!(check_directory(dir.path()).is_ok(), ok, "{mode:o}");
        }
        chmod(dir.path(), 0o700);
    }
}
