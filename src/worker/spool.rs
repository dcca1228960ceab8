//! The spool: the per-store directory where running attempts write their output
//! (`out/`) and their run markers (`run/`), one reused pair of files per slot.
//!
//! Invariants:
//! - The spool and its directories are ours, private (0700) and no symbolic link
//!   ([`file_trust::check_own`]) before anything is opened in them, and every file
//!   in them is opened with `O_NOFOLLOW`: the spool decides which process groups a
//!   worker kills and what output it stores.
//! - A slot's marker names the attempt running in it (job, lease token, process
//!   group and its leader's start time) from spawn to reap, and is emptied after, so
//!   whoever recovers a job on this host kills only that attempt's leftovers.
//! - The output file is only a working area: each attempt's kept output is read and
//!   the file emptied when the attempt ends.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::WorkerError;
use crate::file_trust;
use crate::job::output::KeptOutput;
use crate::worker::{attempt_output, platform};

/// The per-store directory for running attempts' output (`out/`) and run markers
/// (`run/`).
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: PathBuf) -> Spool {
        Spool { root }
    }

    /// Creates the directories (0700: job output may hold secrets), after checking
    /// that what is already there is ours, private and no symbolic link
    /// ([`file_trust::check_own`]): the spool decides which process groups a
    /// worker kills and what output it stores. Files in it are opened with
    /// `O_NOFOLLOW`.
    pub fn create(&self) -> Result<(), WorkerError> {
        let out = self.root.join("out");
        let run = self.root.join("run");
        for dir in [&self.root, &out, &run] {
            file_trust::check_own(dir, "the spool")?;
        }
        for dir in [&out, &run] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    WorkerError::io(
                        format!("cannot create the spool directory {}", dir.display()),
                        e,
                    )
                })?;
        }
        for dir in [&self.root, &out, &run] {
            file_trust::check_own(dir, "the spool")?;
        }
        Ok(())
    }

    /// The spool directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn marker_path(&self, worker_id: &str) -> PathBuf {
        self.root.join("run").join(file_safe(worker_id))
    }

    /// Kills what is left of attempt `token` of `job_id` on this host, if the marker
    /// of `worker_id` says that attempt was running, and clears the marker.
    pub fn kill_leftovers(&self, worker_id: &str, job_id: &str, token: i64) {
        let path = self.marker_path(worker_id);
        let no_follow = |write: bool| {
            OpenOptions::new()
                .read(!write)
                .write(write)
                .truncate(write)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        let Ok(text) = no_follow(false).and_then(|mut f| {
            let mut text = String::new();
            io::Read::read_to_string(&mut f, &mut text).map(|_| text)
        }) else {
            return;
        };
        let Some(marker) = Marker::parse(&text) else {
            return;
        };
        if marker.job != file_safe(job_id) || marker.token != token {
            return;
        }
        if let Err(e) = platform::kill_orphaned_group(marker.pgid, marker.leader_start) {
            crate::log::warn(&format!(
                "could not kill leftovers of job {job_id} (group {}): {e}",
                marker.pgid
            ));
        }
        let _ = no_follow(true);
    }

    /// The files one slot reuses for every attempt it runs.
    pub fn slot_files(&self, worker_id: &str) -> io::Result<SlotFiles> {
        let output_path = self
            .root
            .join("out")
            .join(format!(".{}.running", file_safe(worker_id)));
        let marker = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.marker_path(worker_id))?;
        Ok(SlotFiles {
            output: open_output(&output_path)?,
            output_empty: false,
            marker,
        })
    }
}

/// What a run marker records: which attempt runs in which process group.
struct Marker {
    job: String,
    token: i64,
    pgid: i32,
    leader_start: i64,
}

impl Marker {
    fn parse(text: &str) -> Option<Marker> {
        let mut fields = text.split_whitespace();
        Some(Marker {
            job: fields.next()?.to_owned(),
            token: fields.next()?.parse().ok()?,
            pgid: fields.next()?.parse().ok()?,
            leader_start: fields.next()?.parse().ok()?,
        })
    }
}

/// A slot's reusable output file and run marker.
#[derive(Debug)]
pub struct SlotFiles {
    output: File,
    /// Whether the output file is known to be empty, so emptying it again (an
    /// `ftruncate`, the dearest file call of a short job) is skipped.
    output_empty: bool,
    marker: File,
}

impl SlotFiles {
    pub(super) fn mark(&self, job_id: &str, token: i64, pgid: i32, leader_start: i64) {
        let line = format!("{} {token} {pgid} {leader_start}\n", file_safe(job_id));
        let written = self
            .marker
            .set_len(0)
            .and_then(|()| self.marker.write_all_at(line.as_bytes(), 0));
        if let Err(e) = written {
            crate::log::warn(&format!("cannot write the run marker: {e}"));
        }
    }

    pub(super) fn unmark(&self) {
        let _ = self.marker.set_len(0);
    }

    /// The output file the running attempt writes to (its stdout and stderr).
    pub(super) fn output(&self) -> &File {
        &self.output
    }

    /// A second handle on the output file, for the supervisor to ship and cap the
    /// output of a running attempt. The file is reused, never replaced, so the
    /// handle stays valid for every attempt of the slot.
    pub fn output_handle(&self) -> io::Result<File> {
        self.output.try_clone()
    }

    /// Empties the output file for the next attempt, unless it is known to be
    /// empty. (It is opened for appending, so the attempt writes from its start.)
    pub(super) fn reset_output(&mut self) -> io::Result<()> {
        if !self.output_empty {
            self.output.set_len(0)?;
            self.output_empty = true;
        }
        Ok(())
    }

    /// Called as an attempt starts writing to the output file.
    pub(super) fn output_in_use(&mut self) {
        self.output_empty = false;
    }

    /// The attempt's kept output, read before the file is emptied (the spool holds
    /// nothing of a finished attempt).
    pub(super) fn take_output(&mut self, limit: u64) -> io::Result<KeptOutput> {
        let kept = attempt_output::read_kept(&self.output, limit)?;
        // A file the attempt wrote nothing to is empty already.
        self.output_empty = kept.total == 0;
        self.reset_output()?;
        Ok(kept)
    }
}

/// Encodes a job id for use in a file name: ids are user-chosen and may contain `/`.
fn file_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn open_output(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("a/b c"), "a%2Fb%20c");
        assert_eq!(file_safe("job-1_x"), "job-1_x");
    }
}
