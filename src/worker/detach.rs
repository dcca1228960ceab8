//! `worker start --detach`: a worker process that outlives the terminal it was
//! started from.
//!
//! The command starts itself again (`/proc/self/exe`, so a binary replaced since is
//! not picked up half-way) with the same arguments minus `--detach` and `--json`,
//! in a new session (`setsid`: no controlling terminal, so no SIGHUP when the
//! terminal closes), with stdin from `/dev/null` and stdout and stderr appended to
//! the log file. It then waits for the child to say it started — a byte on a pipe
//! whose write end the child inherits (`--ready-fd`, hidden), written once its
//! workers are registered — and only then prints the pid and exits 0. If the child
//! exits first (a bad store, say), the pipe reaches end-of-file and the command fails
//! with the child's own error line, read back from the log, and its exit code.
//!
//! The log file is opened with `O_NOFOLLOW` and created 0600; a file that is not a
//! regular file, not owned by this user, or writable by group or others is refused
//! rather than written to (a file others can write is not trusted: they could have
//! planted it to learn what the worker logs, or to make its lines lie).

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::store::Location;

/// The log file's name, in the store's directory (SQLite) or in `QUEUECTL_HOME`
/// (PostgreSQL, which has no directory of its own).
pub const LOG_NAME: &str = "worker.log";

/// How long the command waits for the detached worker to start: longer than the
/// slowest way a store can fail to open (SQLite's 20 s busy timeout).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `worker start --detach` failed.
#[derive(Debug, Error)]
pub enum DetachError {
    #[error("no place for the worker log: set QUEUECTL_HOME (or HOME) to a directory of yours")]
    NoLogDirectory,
    #[error(
        "refusing to write the worker log to {}: {why}; remove it, or make it a file of yours with mode 0600", path.display()
    )]
    UntrustedLog { path: PathBuf, why: String },
    #[error("cannot open the worker log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a detached worker: {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The child exited before it started; `code` is its exit code.
    #[error("the detached worker did not start: {reason} (its log: {})", log.display())]
    NotStarted {
        reason: String,
        log: PathBuf,
        code: Option<i32>,
    },
    #[error(
        "the detached worker (pid {pid}) did not start within {}s, so it was stopped; see its log {}",
        START_TIMEOUT.as_secs(), log.display()
    )]
    Timeout { pid: u32, log: PathBuf },
}

/// A worker process started in the background.
#[derive(Debug)]
pub struct Detached {
    pub pid: u32,
    /// Its log file, absolute.
    pub log: PathBuf,
}

/// Where a detached worker on `location` writes its log; `None` when the store is
/// PostgreSQL and there is no `QUEUECTL_HOME`, `XDG_DATA_HOME` or `HOME`.
pub fn log_path(location: &Location) -> Option<PathBuf> {
    let dir = match location {
        Location::Sqlite(path) => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        },
        Location::Postgres(_) => crate::store::data_home()?,
    };
    let path = dir.join(LOG_NAME);
    Some(std::path::absolute(&path).unwrap_or(path))
}

/// Opens (creating it 0600, and its directory 0700, if missing) the log file at
/// `path` for appending; see the module docs for what is refused.
pub fn open_log(path: &Path) -> Result<File, DetachError> {
    let failed = |source| DetachError::Log {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
    }
    // O_NONBLOCK: a FIFO planted at the path fails at once instead of blocking.
    let opened = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let untrusted = |why: &str| DetachError::UntrustedLog {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(untrusted("it is a symlink"));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(untrusted("it is a FIFO")),
        Err(e) => return Err(failed(e)),
    };
    let meta = file.metadata().map_err(failed)?;
    if !meta.file_type().is_file() {
        return Err(untrusted("it is not a regular file"));
    }
    // SAFETY: geteuid takes nothing and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(untrusted(&format!(
            "it belongs to uid {}, not you",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(&format!(
            "others may write to it (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    set_blocking(&file).map_err(failed)?;
    Ok(file)
}

fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The arguments for the detached copy: `args` (this command's, without the
/// program) minus `--detach` and `--json` (the copy's output is the human log).
pub fn child_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .filter(|a| a != "--detach" && a != "--json")
        .collect()
}

/// Starts `queuectl ARGS --ready-fd N` detached, logging to `log_path`, and waits
/// until it has started; see the module docs. `args` must end with `worker start`
/// and its options.
pub fn spawn(args: &[OsString], log_path: &Path) -> Result<Detached, DetachError> {
    let mut log = open_log(log_path)?;
    let logged_before = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let (ready_read, ready_write) = pipe().map_err(|source| DetachError::Spawn {
        what: "a pipe",
        source,
    })?;
    let write_fd = ready_write.as_raw_fd();
    let stdout = log.try_clone().map_err(|source| DetachError::Spawn {
        what: "the log file",
        source,
    })?;
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("queuectl")
        .args(args)
        .arg("--ready-fd")
        .arg(write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log.try_clone().map_err(|source| DetachError::Spawn {
            what: "the log file",
            source,
        })?);
    // SAFETY: runs in the forked child before exec and calls only setsid and
    // fcntl, both async-signal-safe; `write_fd` stays open in the parent until
    // spawn returns, so it is valid in the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 || libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| DetachError::Spawn {
        what: "the process",
        source,
    })?;
    drop(ready_write);
    let pid = child.id();
    let detached = Detached {
        pid,
        log: log_path.to_owned(),
    };
    match wait_ready(&ready_read, START_TIMEOUT) {
        Ok(true) => Ok(detached),
        Ok(false) => {
            let code = wait_exit(&mut child);
            let reason = last_error(&mut log, logged_before)
                .unwrap_or_else(|| "it exited without saying why".into());
            Err(DetachError::NotStarted {
                reason,
                log: detached.log,
                code,
            })
        }
        Err(_) => {
            if let Ok(target) = libc::pid_t::try_from(pid) {
                // SAFETY: kill takes plain integers; `pid` is our unreaped child.
                unsafe { libc::kill(target, libc::SIGTERM) };
            }
            Err(DetachError::Timeout {
                pid,
                log: detached.log,
            })
        }
    }
}

/// A pipe whose ends are closed on exec (the child's end is opened up in the child).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which has room for them.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Whether the child said it started (`false`: it closed the pipe without a word,
/// i.e. exited); an error after `timeout`.
fn wait_ready(read: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut poll = libc::pollfd {
            fd: read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis())
            .unwrap_or(libc::c_int::MAX)
            .max(1);
        // SAFETY: one pollfd, valid for the call.
        let n = unsafe { libc::poll(&mut poll, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        let mut byte = [0u8; 1];
        let mut file = File::from(read.try_clone()?);
        return match file.read(&mut byte) {
            Ok(n) => Ok(n == 1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// The exit code of a child that is exiting (`None`: killed by a signal, or still
/// running after a few seconds).
fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return None,
        }
    }
}

/// The child's last `error: ` line (else its last line) written to `log` after
/// `offset`, without the `error: ` prefix.
fn last_error(log: &mut File, offset: u64) -> Option<String> {
    let mut text = String::new();
    log.seek(SeekFrom::Start(offset)).ok()?;
    // At most the last 64 KiB: the error is at the end.
    let mut bytes = Vec::new();
    log.take(1 << 16).read_to_end(&mut bytes).ok()?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines.iter().rev().find_map(|l| l.strip_prefix("error: "));
    error.or(lines.last().copied()).map(str::to_owned)
}

/// The child's side of the start-up pipe: says "started" once, then closes it.
pub struct Ready(Mutex<Option<File>>);

impl Ready {
    /// Takes over descriptor `fd` (`--ready-fd`), which must be the write end of a
    /// pipe; marks it close-on-exec so the jobs this worker runs never hold it.
    pub fn adopt(fd: i32) -> Result<Ready, DetachError> {
        let bad = |why: &str| DetachError::Spawn {
            what: "--ready-fd",
            source: io::Error::other(why.to_owned()),
        };
        if fd <= 2 {
            return Err(bad("not a pipe of ours"));
        }
        // SAFETY: fstat writes into `stat`, which is valid for writes; it only
        // reads the descriptor number.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut stat) } < 0 || stat.st_mode & libc::S_IFMT != libc::S_IFIFO
        {
            return Err(bad("not a pipe of ours"));
        }
        // SAFETY: F_SETFD on an open descriptor (fstat succeeded) touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(bad("cannot mark it close-on-exec"));
        }
        // SAFETY: the descriptor is open and is a pipe our parent handed over for
        // this purpose; nothing else in this process uses it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Ready(Mutex::new(Some(file))))
    }

    /// Tells the waiting parent that the worker started (once; later calls do
    /// nothing).
    pub fn signal(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut file) = slot.take() {
            // The parent may have given up waiting; the worker runs on regardless.
            let _ = file.write_all(b"1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_gets_the_same_arguments_without_detach_and_json() {
        let args = [
            "--db", "x.db", "--json", "worker", "start", "--detach", "--count", "2",
        ];
        let got = child_args(args.iter().map(OsString::from));
        let want: Vec<OsString> = ["--db", "x.db", "worker", "start", "--count", "2"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_log_is_created_private_and_others_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/worker.log");
        open_log(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);

        let open = dir.path().join("open.log");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let e = open_log(&open).unwrap_err().to_string();
        assert!(e.contains("others may write"), "{e}");

        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = open_log(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn the_reason_is_the_last_error_line_written_since_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.log");
        std::fs::write(&path, "error: an old failure\n").unwrap();
        let offset = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&path)
            .unwrap();
        f.write_all(b"warning: something\nerror: cannot open the store\n\n")
            .unwrap();
        assert_eq!(
            last_error(&mut f, offset).as_deref(),
            Some("cannot open the store")
        );
        assert_eq!(last_error(&mut f, 1 << 20), None);
    }
}
