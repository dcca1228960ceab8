//! Runs one attempt of a job: `sh -c COMMAND` in the job's directory, in a process
//! group of its own, with stdout and stderr captured to a file.
//!
//! Invariants:
//! - Output goes to a file, never a pipe: a backgrounded grandchild holding a pipe
//!   open would make a finished job look hung.
//! - When the shell exits, the rest of its group is killed before the shell is reaped,
//!   so no process of a finished attempt outlives it, and the group id cannot have
//!   been reused by the time we signal it.
//! - The shell gets `PR_SET_PDEATHSIG`, so it dies with its worker ([`spawn`]), and
//!   the rest of its group is killed by the worker's attempt guard
//!   ([`crate::worker::guard`]) the moment the worker dies; the slot's run marker in
//!   the spool names the running attempt's group too, so whoever recovers the job on
//!   this host kills any survivor (say, if the guard was killed with its worker).
//! - An attempt that fails while the spool's file system is full (its output could
//!   not be written) ends `Interrupted`, not `Failed`: the disk is the queue's
//!   problem, so no attempt is used ([`spool_space`]).
//!
//! Each slot reuses one output file and one marker file ([`crate::worker::spool`]), so
//! an attempt costs no file creation. The output file is only a working area: when the
//! attempt ends its kept output ([`crate::worker::attempt_output::read_kept`]) goes to
//! the store with the result and the file is emptied, so the spool holds nothing of
//! finished attempts.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::job::output::{KeptOutput, tail_text};
use crate::job::{Job, OUTPUT_TAIL_BYTES, Outcome};
use crate::store::AttemptFacts;
use crate::worker::exit_status::{facts_of, outcome_of};
use crate::worker::guard::GuardCell;
use crate::worker::spool::SlotFiles;
use crate::worker::{platform, spawn, spool_space};

/// The result of one attempt.
#[derive(Debug)]
pub struct Execution {
    pub outcome: Outcome,
    pub output_tail: Option<String>,
    /// Everything kept of the attempt's output; `None` if it never started.
    pub output: Option<KeptOutput>,
    /// What the worker saw of the attempt's process (the supervisor adds the host).
    pub facts: AttemptFacts,
}

/// Runs attempt `token` of `job` and waits for it, keeping at most about
/// `output_limit` bytes of its output. `spawned` is called once the process has
/// started. (The worker does not block like this: it starts the attempt with
/// [`start_shell`] and finishes it with [`finish_shell`] once its pidfd says the
/// shell has exited.)
pub fn run_shell(
    job: &Job,
    token: i64,
    files: &mut SlotFiles,
    guard: Option<&GuardCell>,
    output_limit: u64,
    spawned: &dyn Fn(),
) -> Execution {
    match start_shell(job, token, files, guard, output_limit, spawned) {
        Ok(mut shell) => {
            shell.mark(files);
            wait_without_reaping(shell.pid);
            finish_shell(shell, files, guard)
        }
        Err(ended) => *ended,
    }
}

/// The shell of a running attempt, exited or not, never reaped before
/// [`finish_shell`]: its pid, and with it its process group id, stay ours.
#[derive(Debug)]
pub struct Shell {
    /// The shell's pid, which is also its process group id.
    pub pid: i32,
    /// Readable once the shell has exited; `None` where the kernel has no pidfds
    /// (before Linux 5.3): then [`Shell::has_exited`] is asked on a short timer.
    pub exit_fd: Option<OwnedFd>,
    output_limit: u64,
    /// The attempt, for its run marker.
    job_id: String,
    token: i64,
    /// When the shell started; its run marker is written [`MARK_AFTER`] later.
    started: Instant,
    /// Whether the slot's run marker names this attempt.
    marked: bool,
}

/// How long an attempt runs before its run marker is written. The marker is the
/// second line of defence against leftovers of a worker that died (the attempt
/// guard is the first, [`crate::worker::guard`]); writing it costs a `/proc` read,
/// a write and an `ftruncate`, more than the rest of a short job's file work, so a
/// job that ends sooner never pays for it (DECISIONS §29).
pub const MARK_AFTER: Duration = Duration::from_millis(50);

impl Shell {
    /// Signals the attempt's process group. The shell is not reaped yet, so the
    /// group id is still the attempt's.
    pub fn signal(&self, signal: i32) {
        let _ = platform::signal_group(self.pid, signal);
    }

    /// When the run marker is due, if it is not written yet.
    pub fn mark_at(&self) -> Option<Instant> {
        (!self.marked).then_some(self.started + MARK_AFTER)
    }

    /// Writes the slot's run marker for this attempt: which job and attempt run in
    /// which process group, started when ([`crate::worker::spool`]). The shell is
    /// not reaped yet, so its pid and start time are still its own.
    pub fn mark(&mut self, files: &SlotFiles) {
        if self.marked {
            return;
        }
        let leader_start = platform::process_start(i64::from(self.pid)).unwrap_or(0);
        files.mark(&self.job_id, self.token, self.pid, leader_start);
        self.marked = true;
    }

    /// Whether the shell has exited (it stays unreaped).
    pub fn has_exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data, and waitid only writes into it.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            );
            // With WNOHANG, si_pid stays 0 while the child runs.
            rc != 0 || info.si_pid() != 0
        }
    }
}

/// Starts attempt `token` of `job` in the background, keeping at most about
/// `output_limit` bytes of its output once it ends; `spawned` is called once the
/// process has started. An attempt that cannot start ends here, as the error.
pub fn start_shell(
    job: &Job,
    token: i64,
    files: &mut SlotFiles,
    guard: Option<&GuardCell>,
    output_limit: u64,
    spawned: &dyn Fn(),
) -> Result<Shell, Box<Execution>> {
    let failed = |error: String| Execution {
        outcome: Outcome::Failed {
            exit_code: None,
            error,
        },
        output_tail: None,
        output: None,
        facts: AttemptFacts::default(),
    };
    let spool_full = || Execution {
        outcome: Outcome::Interrupted {
            reason: SPOOL_FULL.to_owned(),
        },
        output_tail: None,
        output: None,
        facts: AttemptFacts::default(),
    };
    if !Path::new(&job.cwd).is_dir() {
        return Err(Box::new(failed(format!(
            "working directory {} does not exist on this machine; create it or enqueue with --cwd",
            job.cwd
        ))));
    }
    if let Err(e) = files.reset_output() {
        if is_disk_full(&e) {
            return Err(Box::new(spool_full()));
        }
        return Err(Box::new(failed(format!(
            "cannot prepare the output file: {e}"
        ))));
    }
    match spawn_shell(job, files, guard, spawned) {
        Ok((pid, exit_fd)) => Ok(Shell {
            pid,
            exit_fd,
            output_limit,
            job_id: job.id.clone(),
            token,
            started: Instant::now(),
            marked: false,
        }),
        Err(e) if is_disk_full(&e) => Err(Box::new(spool_full())),
        Err(e) => Err(Box::new(failed(format!("could not start /bin/sh: {e}")))),
    }
}

/// Ends the attempt of `shell`, which has exited: kills what is left of its group,
/// reaps it, and takes its output out of the slot's working file.
pub fn finish_shell(shell: Shell, files: &mut SlotFiles, guard: Option<&GuardCell>) -> Execution {
    let pid = shell.pid;
    // The leader is a zombie now, so the group id is still reserved: kill stragglers
    // (`cmd &`) so nothing of this attempt outlives it.
    let _ = platform::signal_group(pid, libc::SIGKILL);
    if let Some(guard) = guard {
        guard.clear();
    }
    if shell.marked {
        files.unmark();
    }
    let reaped = spawn::reap(pid);
    drop(shell.exit_fd);
    let status = ExitStatus::from_raw(reaped.status);
    // Judged before the working file is emptied, which frees what the attempt
    // printed: a failure on a full spool disk is the queue's, not the job's.
    let disk_full = !status.success()
        && spool_space::free_bytes_of(files.output()).is_ok_and(spool_space::is_full);
    let output = files.take_output(shell.output_limit).unwrap_or_else(|e| {
        let lost = format!("(output lost: {e})\n").into_bytes();
        KeptOutput {
            total: lost.len() as u64,
            bytes: lost,
        }
    });
    let outcome = if disk_full {
        Outcome::Interrupted {
            reason: SPOOL_FULL.to_owned(),
        }
    } else {
        outcome_of(status)
    };
    Execution {
        outcome,
        output_tail: tail_text(&output.bytes, OUTPUT_TAIL_BYTES),
        output: Some(output),
        facts: facts_of(pid, status, reaped.usage.as_ref()),
    }
}

/// Why an attempt that failed on a full spool disk is an interruption.
pub const SPOOL_FULL: &str =
    "the spool's disk was full (no attempt used; the worker waits for free space)";

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Starts the shell of the attempt; returns its pid (= its group id) and, where
/// the kernel has them, a pidfd that becomes readable when it exits.
fn spawn_shell(
    job: &Job,
    files: &mut SlotFiles,
    guard: Option<&GuardCell>,
    spawned: &dyn Fn(),
) -> io::Result<(i32, Option<OwnedFd>)> {
    let attempt = (job.attempts + 1).to_string();
    // The job's own variables (`--env`) override the worker's; the two that say
    // which job and attempt this is cannot be overridden.
    let mut env: Vec<(&str, &str)> =
        vec![("QUEUECTL_JOB_ID", &job.id), ("QUEUECTL_ATTEMPT", &attempt)];
    for (key, value) in job.env.iter().flatten() {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key, value));
        }
    }
    let request =
        spawn::SpawnRequest::shell(&job.command, &job.cwd, &env, files.output().as_raw_fd())?;
    let pgid = spawn::spawn(&request, guard.map(GuardCell::cell))?;
    files.output_in_use();
    spawned();
    Ok((pgid, spawn::exit_fd(pgid)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::spool::Spool;

    fn job(command: &str, cwd: &str) -> Job {
        let new = crate::job::NewJob::new("t/1".into(), command.into(), cwd.into());
        Job {
            state: crate::job::JobState::Processing,
            lease_token: 1,
            ..Job::pending(new, 0, 0)
        }
    }

    fn spool() -> (tempfile::TempDir, Spool, SlotFiles) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"));
        spool.create().expect("spool");
        let files = spool.slot_files("w-1").expect("slot files");
        (dir, spool, files)
    }

    const LIMIT: u64 = 1 << 20;

    fn run(_spool: &Spool, files: &mut SlotFiles, job: &Job, token: i64) -> Execution {
        run_shell(job, token, files, None, LIMIT, &|| {})
    }

    #[test]
    fn captures_output_and_exit_codes() {
        let (dir, spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let ok = run(&spool, &mut files, &job("echo hello; pwd", &cwd), 1);
        assert_eq!(ok.outcome, Outcome::Succeeded);
        let tail = ok.output_tail.unwrap_or_default();
        assert!(tail.contains("hello") && tail.contains(&cwd), "{tail}");
        let kept = ok.output.expect("output kept");
        assert!(kept.bytes.starts_with(b"hello\n"), "{kept:?}");
        assert_eq!(kept.total, kept.bytes.len() as u64);
        assert_eq!(
            files.output().metadata().map(|m| m.len()).ok(),
            Some(0),
            "the working file is emptied as the attempt ends"
        );
        let bad = run(&spool, &mut files, &job("no-such-command-xyz", &cwd), 2);
        assert!(matches!(
            bad.outcome,
            Outcome::Failed {
                exit_code: Some(127),
                ..
            }
        ));
        let quiet = run(&spool, &mut files, &job("true", &cwd), 3);
        assert_eq!(
            (quiet.outcome, quiet.output_tail),
            (Outcome::Succeeded, None)
        );
        assert_eq!(quiet.output.map(|o| o.total), Some(0));
    }

    #[test]
    fn the_history_learns_the_pid_the_signal_and_the_resources_used() {
        let (dir, spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let busy = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; kill -KILL $$";
        let done = run(&spool, &mut files, &job(busy, &cwd), 1);
        assert!(done.facts.pid.is_some_and(|pid| pid > 1));
        assert_eq!(done.facts.signal, Some(i64::from(libc::SIGKILL)));
        assert!(done.facts.max_rss_kb.is_some_and(|kb| kb > 0));
        assert!(done.facts.cpu_ms.is_some(), "{:?}", done.facts);
    }

    #[test]
    fn output_past_the_limit_keeps_head_marker_and_tail() {
        let (dir, _spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let job = job(
            "echo first; head -c 100000 /dev/zero | tr '\\0' x; echo; echo last",
            &cwd,
        );
        let done = run_shell(&job, 1, &mut files, None, 1000, &|| {});
        let kept = done.output.expect("output kept");
        assert_eq!(kept.total, 6 + 100_001 + 5);
        let text = String::from_utf8_lossy(&kept.bytes);
        assert!(text.starts_with("first\nxxx"), "{text}");
        assert!(text.contains("bytes omitted ...]\n"), "{text}");
        assert!(text.ends_with("xxx\nlast\n"), "{text}");
        assert!(kept.bytes.len() < 1100);
    }

    #[test]
    fn a_backgrounded_grandchild_does_not_hang_the_job() {
        let (dir, spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let started = std::time::Instant::now();
        let done = run(&spool, &mut files, &job("sleep 30 & echo done", &cwd), 1);
        assert_eq!(done.outcome, Outcome::Succeeded);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn the_run_marker_is_written_only_for_an_attempt_that_runs_on() {
        let (dir, spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let marker = spool.root().join("run").join("w-1");
        let guard = None;
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();

        let short = job("true", &cwd);
        let shell = start_shell(&short, 1, &mut files, guard, LIMIT, &|| {}).expect("started");
        assert!(shell.mark_at().is_some(), "not marked at start");
        wait_without_reaping(shell.pid);
        let done = finish_shell(shell, &mut files, guard);
        assert_eq!(done.outcome, Outcome::Succeeded);
        assert_eq!(read(&marker).trim(), "", "a short attempt leaves no marker");

        let long = job("sleep 0.2", &cwd);
        let mut shell = start_shell(&long, 2, &mut files, guard, LIMIT, &|| {}).expect("started");
        shell.mark(&files);
        assert_eq!(shell.mark_at(), None);
        let line = read(&marker);
        assert!(
            line.starts_with(&format!("t%2F1 2 {} ", shell.pid)),
            "marker: {line:?}"
        );
        wait_without_reaping(shell.pid);
        finish_shell(shell, &mut files, guard);
        assert_eq!(
            read(&marker),
            "",
            "the marker is cleared as the attempt ends"
        );
    }

    #[test]
    fn without_a_pidfd_an_exit_is_seen_by_asking_and_the_shell_stays_unreaped() {
        // The path a worker takes where `pidfd_open` is missing or refused (kernels
        // before 5.3, some container seccomp profiles): its wait asks on a timer.
        let (dir, _spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let guard = None;
        let job = job("sleep 0.1; exit 4", &cwd);
        let mut shell = start_shell(&job, 1, &mut files, guard, LIMIT, &|| {}).expect("started");
        shell.exit_fd = None;
        assert!(!shell.has_exited(), "still running");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !shell.has_exited() {
            assert!(std::time::Instant::now() < deadline, "exit never seen");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(shell.has_exited(), "asking again does not reap it");
        let done = finish_shell(shell, &mut files, guard);
        assert!(matches!(
            done.outcome,
            Outcome::Failed {
                exit_code: Some(4),
                ..
            }
        ));
    }

    #[test]
    fn a_missing_directory_is_a_failure() {
        let (_dir, spool, mut files) = spool();
        let failed = run(&spool, &mut files, &job("true", "/no/such/dir"), 1);
        assert!(matches!(
            failed.outcome,
            Outcome::Failed {
                exit_code: None,
                ..
            }
        ));
    }

    #[test]
    fn jobs_see_default_signals_and_their_env() {
        let (dir, spool, mut files) = spool();
        let cwd = dir.path().to_string_lossy().into_owned();
        let out = run(
            &spool,
            &mut files,
            &job("echo $QUEUECTL_JOB_ID; yes | head -1; kill -TERM $$", &cwd),
            1,
        );
        assert_eq!(out.output_tail.as_deref(), Some("t/1\ny\n"));
        assert!(matches!(
            out.outcome,
            Outcome::Failed {
                exit_code: None,
                ..
            }
        ));
    }
}
