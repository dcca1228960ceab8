//! The spool's disk space (issue #15, defect 8): a full disk on the queue's side is
//! not the job's fault.
//!
//! Invariants:
//! - The spool's file system counts as full below [`MIN_FREE`] bytes free
//!   ([`is_full`]). An attempt that fails while it is full is recorded as an
//!   interruption (`worker::exec`): no attempt is used, as when a worker dies.
//! - While it is full the worker claims nothing, and looks again every
//!   [`CHECK_WHILE_FULL`]; once space is back it claims at once. Each change is
//!   logged once, not at every check.
//! - Otherwise the space is checked at most every [`CHECK_WHILE_FREE`], and only
//!   when the worker is about to claim: a busy worker pays one `statvfs` per
//!   quarter second at most.
//!
//! All decisions take the time and the free bytes as arguments, so they are tested
//! without a disk.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::log;

/// Below this many free bytes the spool's file system counts as full.
pub const MIN_FREE: u64 = 1 << 20;
/// While the spool's file system is full, how often it is checked again.
pub const CHECK_WHILE_FULL: Duration = Duration::from_secs(1);
/// While it is not, how often a claiming worker checks it at most.
pub const CHECK_WHILE_FREE: Duration = Duration::from_millis(250);

/// Whether `free` bytes make a full file system.
pub fn is_full(free: u64) -> bool {
    free < MIN_FREE
}

/// The bytes free to unprivileged users on the file system of `fd`.
pub fn free_bytes_of(fd: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: statvfs is plain data that fstatvfs only writes into.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The bytes free on the file system of `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    free_bytes_of(&std::fs::File::open(path)?)
}

/// What the worker knows of the spool's space.
#[derive(Debug)]
pub struct SpoolSpace {
    full: bool,
    next_check: Instant,
}

impl SpoolSpace {
    pub fn new(now: Instant) -> SpoolSpace {
        SpoolSpace {
            full: false,
            next_check: now,
        }
    }

    /// Whether claims wait for space, checking `spool`'s file system when due.
    pub fn claims_paused(&mut self, now: Instant, spool: &Path) -> bool {
        if now >= self.next_check {
            // A file system that cannot be asked is not judged full.
            let free = free_bytes(spool).unwrap_or(u64::MAX);
            self.note(now, free);
        }
        self.full
    }

    /// An attempt just ended on a full disk: look again before the next claim.
    pub fn suspect(&mut self, now: Instant) {
        self.next_check = now;
    }

    /// While full: when to look again (the supervisor wakes for it).
    pub fn recheck_at(&self) -> Option<Instant> {
        self.full.then_some(self.next_check)
    }

    /// Takes a measurement of `free` bytes at `now`; returns whether fullness
    /// changed (and logs it).
    pub fn note(&mut self, now: Instant, free: u64) -> bool {
        let full = is_full(free);
        let changed = full != self.full;
        self.full = full;
        self.next_check = now
            + if full {
                CHECK_WHILE_FULL
            } else {
                CHECK_WHILE_FREE
            };
        if changed && full {
            log::warn(&format!(
                "the spool's disk is full ({} KiB free); claiming paused until space is \
                 freed (checked every second), running jobs continue",
                free / 1024
            ));
        } else if changed {
            log::info("the spool's disk has space again; claiming resumed");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_disk_pauses_claims_and_is_checked_again_every_second() {
        let start = Instant::now();
        let mut space = SpoolSpace::new(start);
        assert_eq!(space.recheck_at(), None);
        assert!(space.note(start, 4096), "full: a change");
        assert!(space.full);
        assert_eq!(space.recheck_at(), Some(start + CHECK_WHILE_FULL));
        assert!(
            !space.note(start + CHECK_WHILE_FULL, 0),
            "still full: said once"
        );
        assert!(
            space.note(start + 2 * CHECK_WHILE_FULL, MIN_FREE),
            "space again"
        );
        assert_eq!(space.recheck_at(), None);
        assert_eq!(
            space.next_check,
            start + 2 * CHECK_WHILE_FULL + CHECK_WHILE_FREE
        );
    }

    #[test]
    fn an_attempt_on_a_full_disk_makes_the_next_claim_look() {
        let start = Instant::now();
        let mut space = SpoolSpace::new(start);
        space.note(start, u64::MAX);
        assert!(space.next_check > start + MS);
        space.suspect(start + MS);
        assert_eq!(space.next_check, start + MS);
    }

    #[test]
    fn the_free_space_of_a_directory_can_be_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).is_ok());
    }
}
