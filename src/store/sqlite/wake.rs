//! Waking SQLite workers when there is work for them, and watchers on every commit.
//!
//! Two signals, both seen through inotify:
//! - **The doorbell** (`STORE-wake`, beside the store): rung by a write that makes
//!   work for workers (`Store::subscribe_worker`): enqueue, import, retry, cancel, stop
//!   requests, queue and cron changes, and a worker round trip that put a run back to
//!   `pending` or released dependents; the same writes that NOTIFY on PostgreSQL.
//!   Workers watch the doorbell file itself, so a worker's own claims and finishes
//!   (and other workers' ones) do not wake it: a busy worker used to be woken two
//!   or three times per job by its own WAL writes.
//! - **The WAL**: every commit writes it, so `wait` and `logs -f`
//!   (`Store::subscribe`) learn of job ends and shipped output at once. Its
//!   directory is watched, since a checkpoint may delete the file.
//!
//! Invariants: the doorbell is rung after the commit it announces, so a woken worker
//! finds the work; a ring is best effort (a failure costs latency, never a job:
//! workers poll every second as a fallback) and never fails the write; the doorbell
//! holds no data, is created 0600 without following a symbolic link, and lives in
//! the store's directory, whose ownership and permissions were checked when the store
//! opened.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use super::sibling;
use crate::error::StoreError;
use crate::store::{Result, Wake};

/// The doorbell file beside the store at `path`.
pub(super) fn doorbell_path(path: &Path) -> PathBuf {
    sibling(path, "-wake")
}

/// Wakes the workers watching the store at `path`: one byte written in place, so
/// the file never grows. Errors are ignored (see the module docs).
pub(super) fn ring(path: &Path) {
    if let Ok(file) = open_doorbell(path) {
        let _ = file.write_at(b"\n", 0);
    }
}

/// Opens (creating if needed) the doorbell of the store at `path` for writing.
fn open_doorbell(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(doorbell_path(path))
}

/// Calls `wake` whenever the doorbell of the store at `path` rings, from a thread of
/// its own. The file itself is watched, not the directory: a watch on the directory
/// would wake the thread on every WAL write, to find the event was not the
/// doorbell's. If the doorbell is deleted while the store is still there, it is
/// created and watched again and the subscriber woken once (a ring may have been
/// missed); if the store is gone too (a scratch store removed), the thread ends and
/// the worker's fallback poll is all that is left. A doorbell that cannot be created
/// (a read-only store, where nobody can ring) is watched for through its directory.
pub(super) fn watch_doorbell(path: &Path, wake: Wake) -> Result<()> {
    let store = path.to_owned();
    let mut inotify =
        inotify::Inotify::init().map_err(|e| StoreError::io("inotify unavailable", e))?;
    if add_doorbell_watch(&inotify, &store).is_err() {
        return watch_through_directory(&doorbell_path(path), wake);
    }
    thread::Builder::new()
        .name("doorbell".into())
        .spawn(move || {
            let mut buffer = [0u8; 1024];
            while let Ok(events) = inotify.read_events_blocking(&mut buffer) {
                let gone = events
                    .into_iter()
                    .any(|e| e.mask.contains(inotify::EventMask::IGNORED));
                if gone && (!store.exists() || add_doorbell_watch(&inotify, &store).is_err()) {
                    return;
                }
                wake();
            }
        })
        .map_err(|e| StoreError::io("cannot start a thread", e))?;
    Ok(())
}

/// Creates the doorbell if missing and watches it (not following a symbolic link).
fn add_doorbell_watch(inotify: &inotify::Inotify, store: &Path) -> Result<()> {
    let bell = doorbell_path(store);
    open_doorbell(store)
        .map_err(|e| StoreError::io(format!("cannot create {}", bell.display()), e))?;
    inotify
        .watches()
        .add(
            &bell,
            inotify::WatchMask::MODIFY
                | inotify::WatchMask::DELETE_SELF
                | inotify::WatchMask::MOVE_SELF
                | inotify::WatchMask::DONT_FOLLOW,
        )
        .map_err(|e| StoreError::io(format!("cannot watch {}", bell.display()), e))?;
    Ok(())
}

/// Calls `wake` whenever `file` is created or written, from a thread of its own,
/// watching its directory: for the WAL, which a checkpoint may delete and a commit
/// create again.
pub(super) fn watch_through_directory(file: &Path, wake: Wake) -> Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = PathBuf::from(file.file_name().unwrap_or_default());
    let inotify = inotify::Inotify::init().map_err(|e| StoreError::io("inotify unavailable", e))?;
    inotify
        .watches()
        .add(
            &dir,
            inotify::WatchMask::MODIFY | inotify::WatchMask::CREATE,
        )
        .map_err(|e| StoreError::io(format!("cannot watch {}", dir.display()), e))?;
    thread::Builder::new()
        .name("wal-watch".into())
        .spawn(move || {
            let mut inotify = inotify;
            let mut buffer = [0u8; 4096];
            while let Ok(events) = inotify.read_events_blocking(&mut buffer) {
                let ours = events
                    .into_iter()
                    .any(|e| e.name.is_some_and(|n| Path::new(n) == name));
                if ours {
                    wake();
                }
            }
        })
        .map_err(|e| StoreError::io("cannot start a thread", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Job, NewJob, Outcome, after_attempt};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AttemptOutcome, Exchange, Finished, IfMissing, Lease, OpenFor, Store};
    use std::time::Duration;

    fn job(id: &str) -> NewJob {
        NewJob::new(id.into(), "true".into(), "/".into())
    }

    fn claim(store: &mut SqliteStore) -> Job {
        let reply = store
            .exchange(&Exchange {
                claim_for: &["w1".to_owned()],
                lease_timeout: Duration::from_secs(60),
                ..Exchange::default()
            })
            .expect("claim");
        reply.claimed.into_iter().next().expect("a job").1
    }

    fn report(store: &mut SqliteStore, job: &Job, outcome: Outcome) {
        let recorded = AttemptOutcome::of(&outcome);
        let backoff = crate::backoff::Backoff::new(1.0, Duration::ZERO);
        let transition = after_attempt(
            job.attempts,
            job.max_retries,
            job.interruptions,
            &outcome,
            &backoff,
        );
        let finished = [Finished {
            lease: Lease {
                job_id: job.id.clone(),
                token: job.lease_token,
            },
            worker_id: job.worker_id.clone(),
            outcome: recorded,
            transition,
            output_tail: None,
            output: None,
            facts: Default::default(),
            only_if_expired: false,
        }];
        let reply = store
            .exchange(&Exchange {
                finished: &finished,
                lease_timeout: Duration::from_secs(60),
                ..Exchange::default()
            })
            .expect("report");
        assert!(reply.rejected.is_empty());
    }

    /// Whether the doorbell rang since the last call (it is removed each time).
    fn rang(path: &Path) -> bool {
        std::fs::remove_file(doorbell_path(path)).is_ok()
    }

    #[test]
    fn work_rings_the_doorbell_and_routine_claims_and_finishes_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.db");
        let mut store = SqliteStore::open(&path, OpenFor::Worker, IfMissing::Create).expect("open");
        assert!(!rang(&path), "opening rings nothing");

        store.enqueue(&[job("a"), job("b")]).expect("enqueue");
        assert!(rang(&path), "an enqueue is work");

        let a = claim(&mut store);
        assert!(!rang(&path), "a claim is not");
        report(&mut store, &a, Outcome::Succeeded);
        assert!(!rang(&path), "a plain finish is not");

        let b = claim(&mut store);
        report(
            &mut store,
            &b,
            Outcome::Interrupted {
                reason: "worker stopped".into(),
            },
        );
        assert!(rang(&path), "a run put back to pending is work for others");

        store
            .retry(Some(&["a".to_owned()]), &[crate::job::JobState::Completed])
            .expect("retry");
        assert!(rang(&path), "a retry is work");
        store.cancel(&["a".to_owned()]).expect("cancel");
        assert!(rang(&path), "a cancel is");
        store
            .set_queue("default", crate::store::QueueChange::Pause)
            .expect("pause");
        assert!(rang(&path), "a queue change is");
    }
}
