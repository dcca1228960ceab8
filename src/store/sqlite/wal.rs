//! The write-ahead log: holding the file alone and keeping the log short (waking
//! on commits is `wake`'s).
//!
//! Invariants kept here:
//! - A command holds the file alone only when no other connection is open; the
//!   attempt never waits, so a worker or another command is never blocked by it.
//! - Everything here that checkpoints only saves time: a checkpoint that fails or
//!   finds the file busy is skipped, and SQLite alone decides what is durable.
//! - A new store file or WAL file is made durable by syncing its directory
//!   ([`sync_parent_dir`]), as SQLite is built without doing that itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::{SqliteStore, is_busy, sibling};
use crate::error::StoreError;
use crate::store::{OpenFor, Result};

/// Copies the WAL into the database without waiting for anyone.
const CHECKPOINT_PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// Copies the WAL into the database and truncates it to nothing.
const CHECKPOINT_TRUNCATE: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

/// See `impl Drop for SqliteStore`.
const WAL_TRUNCATE_BYTES: u64 = 128 * 1024;

/// How many frames (pages) of log make a WAL long: 32 pages of 4 KiB, about ten
/// `enqueue` commits. Every command re-reads the log since the last restart to
/// rebuild the WAL index, so a long log slows every command; starting over costs
/// one checkpoint (an `fdatasync` of the database).
const WAL_RESTART_FRAMES: u64 = 32;

impl SqliteStore {
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
    pub(super) fn start_long_wal_over(&mut self) {
        if wal_log_reaches(&wal_path(&self.path), WAL_RESTART_FRAMES) {
            let _ = self.conn.query_row(CHECKPOINT_PASSIVE, [], |_| Ok(()));
        }
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
            let _ = self.conn.query_row(CHECKPOINT_TRUNCATE, [], |_| Ok(()));
        }
    }
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
pub(super) fn take_if_alone(conn: &Connection) -> rusqlite::Result<bool> {
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

/// The store's write-ahead log, beside it.
pub(super) fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// The store's shared-memory index of the log, beside it.
pub(super) fn shm_path(path: &Path) -> PathBuf {
    sibling(path, "-shm")
}

/// fsyncs the directory holding `path`, so newly created files in it survive a
/// power loss.
pub(super) fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("cannot sync {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NewJob;
    use crate::store::Store;

    fn locking_mode(store: &SqliteStore) -> String {
        store
            .conn
            .pragma_query_value(None, "locking_mode", |r| r.get(0))
            .expect("read locking_mode")
    }

    fn job(id: &str) -> NewJob {
        NewJob::new(id.into(), "true".into(), "/".into())
    }

    #[test]
    fn a_command_alone_holds_the_store_and_others_find_its_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        // A store in use has a WAL file; only then may a command hold it alone.
        let mut created =
            SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                .expect("create");
        assert_eq!(locking_mode(&created), "normal");
        created.enqueue(&[job("first")]).expect("first enqueue");
        drop(created);

        let mut alone = SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
            .expect("open");
        assert_eq!(locking_mode(&alone), "exclusive");
        alone.enqueue(&[job("a")]).expect("enqueue alone");
        drop(alone);

        // A worker rebuilds the shared WAL index from the WAL the command wrote.
        let mut worker = SqliteStore::open(&path, OpenFor::Worker, crate::store::IfMissing::Create)
            .expect("open worker");
        assert_eq!(locking_mode(&worker), "normal");
        assert!(worker.job("a").expect("read").is_some());
    }

    /// A store in use: one job written, so it has a WAL.
    fn created(path: &Path) {
        let mut store = SqliteStore::open(path, OpenFor::Worker, crate::store::IfMissing::Create)
            .expect("create");
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
            let mut store =
                SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                    .expect("open");
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
        let mut reader = SqliteStore::open(&path, OpenFor::Worker, crate::store::IfMissing::Create)
            .expect("open worker");
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
        let mut writer =
            SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                .expect("open");
        assert!(writer.alone);
        for i in 0..40 {
            writer.enqueue(&[job(&format!("j{i}"))]).expect("enqueue");
        }
        drop(writer);
        assert!(wal_log_reaches(&wal_path(&path), WAL_RESTART_FRAMES));

        let mut reader =
            SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                .expect("open");
        assert!(reader.job("j39").expect("read").is_some());
        drop(reader);
        assert_eq!(wal_size(&path), 0);
        let mut reader =
            SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                .expect("open");
        assert!(reader.job("j39").expect("read").is_some());
    }

    #[test]
    fn a_command_shares_the_store_with_an_open_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let mut worker = SqliteStore::open(&path, OpenFor::Worker, crate::store::IfMissing::Create)
            .expect("create");

        let mut command =
            SqliteStore::open(&path, OpenFor::Command, crate::store::IfMissing::Create)
                .expect("open beside a worker");
        assert_eq!(locking_mode(&command), "normal");
        command
            .enqueue(&[job("b")])
            .expect("enqueue beside a worker");
        assert!(worker.job("b").expect("read").is_some());
        worker.enqueue(&[job("c")]).expect("worker writes too");
        assert!(command.job("c").expect("read").is_some());
    }
}
