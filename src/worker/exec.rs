//! Runs one attempt of a job: `sh -c COMMAND` in the job's directory, in a process
//! group of its own, with stdout and stderr captured to a file.
//!
//! Invariants:
//! - Output goes to a file, never a pipe: a backgrounded grandchild holding a pipe
//!   open would make a finished job look hung.
//! - When the shell exits, the rest of its group is killed before the shell is reaped,
//!   so no process of a finished attempt outlives it, and the group id cannot have
//!   been reused by the time we signal it.
//! - The shell gets `PR_SET_PDEATHSIG`, so it dies with its worker; a run marker in the
//!   spool records the group, so a surviving grandchild can be killed by whoever
//!   recovers the job on this host.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

use crate::job::{Job, OUTPUT_TAIL_BYTES, Outcome};
use crate::worker::platform;

/// The per-store directory for attempt output (`out/`) and run markers (`run/`).
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: PathBuf) -> Spool {
        Spool { root }
    }

    /// Creates the directories (0700: job output may hold secrets).
    pub fn create(&self) -> io::Result<()> {
        for dir in [self.root.join("out"), self.root.join("run")] {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        Ok(())
    }

    /// Where the output of attempt `token` of `job_id` goes.
    pub fn output_path(&self, job_id: &str, token: i64) -> PathBuf {
        self.root
            .join("out")
            .join(format!("{}.{token}.log", file_safe(job_id)))
    }

    fn marker_path(&self, job_id: &str, token: i64) -> PathBuf {
        self.root
            .join("run")
            .join(format!("{}.{token}", file_safe(job_id)))
    }

    /// Kills what is left of an interrupted attempt on this host, if its marker is
    /// here, and removes the marker.
    pub fn kill_leftovers(&self, job_id: &str, token: i64) {
        let path = self.marker_path(job_id, token);
        let Ok(text) = fs::read_to_string(&path) else {
            return;
        };
        let mut fields = text.split_whitespace().map(str::parse::<i64>);
        if let (Some(Ok(pgid)), Some(Ok(start))) = (fields.next(), fields.next())
            && let Ok(pgid) = i32::try_from(pgid)
            && let Err(e) = platform::kill_orphaned_group(pgid, start)
        {
            crate::log::warn(&format!(
                "could not kill leftovers of job {job_id} (group {pgid}): {e}"
            ));
        }
        let _ = fs::remove_file(path);
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

/// Lets another thread signal the running attempt's process group, and only while
/// its leader has not been reaped (so the group id is still ours).
#[derive(Debug, Default)]
pub struct RunHandle {
    pgid: Mutex<Option<i32>>,
}

impl RunHandle {
    /// Signals the attempt's group; does nothing if no attempt is running.
    pub fn signal(&self, signal: i32) {
        let guard = self.pgid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pgid) = *guard {
            let _ = platform::signal_group(pgid, signal);
        }
    }

    fn set(&self, pgid: Option<i32>) {
        *self.pgid.lock().unwrap_or_else(|p| p.into_inner()) = pgid;
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub struct Execution {
    pub outcome: Outcome,
    pub output_tail: Option<String>,
}

/// Runs attempt `token` of `job` and waits for it.
pub fn run_shell(job: &Job, token: i64, spool: &Spool, handle: &RunHandle) -> Execution {
    let failed = |error: String| Execution {
        outcome: Outcome::Failed {
            exit_code: None,
            error,
        },
        output_tail: None,
    };
    if !Path::new(&job.cwd).is_dir() {
        return failed(format!(
            "working directory {} does not exist any more",
            job.cwd
        ));
    }
    let out_path = spool.output_path(&job.id, token);
    let output = match open_output(&out_path) {
        Ok(file) => file,
        Err(e) => {
            return failed(format!(
                "cannot create output file {}: {e}",
                out_path.display()
            ));
        }
    };
    let status = match spawn_and_wait(job, token, spool, handle, &output) {
        Ok(status) => status,
        Err(e) => return failed(format!("could not start sh: {e}")),
    };
    Execution {
        outcome: outcome_of(status),
        output_tail: read_tail(&out_path),
    }
}

fn open_output(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn spawn_and_wait(
    job: &Job,
    token: i64,
    spool: &Spool,
    handle: &RunHandle,
    output: &File,
) -> io::Result<ExitStatus> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&job.command)
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output.try_clone()?)
        .env("QUEUECTL_JOB_ID", &job.id)
        .env("QUEUECTL_ATTEMPT", (job.attempts + 1).to_string())
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe functions prctl, getppid and _exit.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The worker may have died between fork and prctl.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let pgid = i32::try_from(pid).map_err(io::Error::other)?;
    handle.set(Some(pgid));
    let marker = spool.marker_path(&job.id, token);
    let start = platform::process_start(i64::from(pid)).unwrap_or(0);
    if let Err(e) = fs::write(&marker, format!("{pgid} {start}\n")) {
        crate::log::warn(&format!(
            "cannot write run marker {}: {e}",
            marker.display()
        ));
    }
    wait_without_reaping(pgid);
    // The leader is a zombie now, so the group id is still reserved: kill stragglers
    // (`cmd &`) so nothing of this attempt outlives it.
    let _ = platform::signal_group(pgid, libc::SIGKILL);
    handle.set(None);
    let status = child.wait();
    let _ = fs::remove_file(&marker);
    status
}

/// Blocks until `pid` has exited, leaving it unreaped.
fn wait_without_reaping(pid: i32) {
    loop {
        // SAFETY: siginfo_t is plain data, and waitid only writes into it.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn outcome_of(status: ExitStatus) -> Outcome {
    if status.success() {
        return Outcome::Succeeded;
    }
    if let Some(code) = status.code() {
        let hint = match code {
            126 => " (command not executable)",
            127 => " (command not found)",
            _ => "",
        };
        return Outcome::Failed {
            exit_code: Some(i64::from(code)),
            error: format!("exit code {code}{hint}"),
        };
    }
    let signal = status.signal().unwrap_or(0);
    Outcome::Failed {
        exit_code: None,
        error: format!("killed by signal {signal}{}", signal_name(signal)),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGPIPE => " (SIGPIPE)",
        _ => "",
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] of the output file; removes the file if it is empty.
fn read_tail(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len == 0 {
        drop(file);
        let _ = fs::remove_file(path);
        return None;
    }
    let keep = len.min(OUTPUT_TAIL_BYTES as u64);
    file.seek(SeekFrom::Start(len - keep)).ok()?;
    let mut bytes = Vec::with_capacity(usize::try_from(keep).unwrap_or(0));
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(command: &str, cwd: &str) -> Job {
        Job {
            id: "t/1".into(),
            command: command.into(),
            cwd: cwd.into(),
            state: crate::job::JobState::Processing,
            attempts: 0,
            max_retries: 0,
            interruptions: 0,
            created_at: 0,
            updated_at: 0,
            next_run_at: 0,
            lease_token: 1,
            lease_expires_at: None,
            worker_id: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            last_error: None,
            output_tail: None,
        }
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"));
        spool.create().expect("spool");
        (dir, spool)
    }

    #[test]
    fn captures_output_and_exit_codes() {
        let (dir, spool) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let ok = run_shell(
            &job("echo hello; pwd", &cwd),
            1,
            &spool,
            &RunHandle::default(),
        );
        assert_eq!(ok.outcome, Outcome::Succeeded);
        let tail = ok.output_tail.unwrap_or_default();
        assert!(tail.contains("hello") && tail.contains(&cwd), "{tail}");
        let bad = run_shell(
            &job("no-such-command-xyz", &cwd),
            2,
            &spool,
            &RunHandle::default(),
        );
        assert!(matches!(
            bad.outcome,
            Outcome::Failed {
                exit_code: Some(127),
                ..
            }
        ));
    }

    #[test]
    fn a_backgrounded_grandchild_does_not_hang_the_job() {
        let (dir, spool) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let started = std::time::Instant::now();
        let run = run_shell(
            &job("sleep 30 & echo done", &cwd),
            1,
            &spool,
            &RunHandle::default(),
        );
        assert_eq!(run.outcome, Outcome::Succeeded);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_missing_directory_is_a_failure() {
        let (_dir, spool) = spool();
        let run = run_shell(
            &job("true", "/no/such/dir"),
            1,
            &spool,
            &RunHandle::default(),
        );
        assert!(matches!(
            run.outcome,
            Outcome::Failed {
                exit_code: None,
                ..
            }
        ));
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("a/b c"), "a%2Fb%20c");
        assert_eq!(file_safe("job-1_x"), "job-1_x");
    }
}
