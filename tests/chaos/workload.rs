//! The jobs of a chaos run: what each kind of job does, the shell command that does it
//! while writing its start and end marks to the run log, and how it is enqueued.
//!
//! Every command appends `S JOB ATTEMPT PID PPID NANOS` when it starts and
//! `E JOB ATTEMPT PID PPID NANOS CODE` when it ends to a log outside the store (the
//! `PPID` is the worker process, the `PID` the attempt's shell and process group). A
//! run killed with its worker has no end mark. Lines are short single `>>` writes, so
//! concurrent appends never interleave.
//!
//! No command leaves a process in the background: an attempt's background children
//! can outlive a SIGKILLed worker (issue #15, defect 2, fixed separately), and the
//! checker's "nothing of an attempt survives" check would then report that defect
//! rather than what this suite is about.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::json;

use crate::common::Env;
use crate::rng::Rng;

/// What a job does, and so how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sleeps a little, exits 0.
    Quick,
    /// Fails (exit 1) on its first `fails` attempts, then succeeds.
    Flaky { fails: u32 },
    /// Always exits 3: ends dead after its retries.
    Failing,
    /// Sleeps past its timeout on the first attempt, then succeeds.
    TimeoutOnce,
    /// Always sleeps past its timeout: ends dead.
    TimeoutAlways,
    /// Runs for seconds: the likeliest to be running when a worker is killed.
    Long,
    /// Prints 2 MB (more than the kept output).
    Loud,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Quick => "quick",
            Kind::Flaky { .. } => "flaky",
            Kind::Failing => "failing",
            Kind::TimeoutOnce => "timeout-once",
            Kind::TimeoutAlways => "timeout-always",
            Kind::Long => "long",
            Kind::Loud => "loud",
        }
    }

    /// Whether the job must end `completed` (else `dead`), unless it was interrupted
    /// `MAX_INTERRUPTIONS` times.
    pub fn completes(self) -> bool {
        !matches!(self, Kind::Failing | Kind::TimeoutAlways)
    }
}

/// One job of the run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub kind: Kind,
}

/// Picks the next job's kind, retries and timeout, and gives its JSON line.
pub fn next_job(rng: &mut Rng, n: usize, log: &Path, token: &str) -> (Plan, String) {
    let kind = match rng.weighted(&[30, 15, 8, 6, 4, 20, 6]) {
        0 => Kind::Quick,
        1 => Kind::Flaky {
            fails: rng.range(1, 3) as u32,
        },
        2 => Kind::Failing,
        3 => Kind::TimeoutOnce,
        4 => Kind::TimeoutAlways,
        5 => Kind::Long,
        _ => Kind::Loud,
    };
    let body = match kind {
        Kind::Quick => format!("sleep 0.{:02}", rng.range(1, 30)),
        Kind::Flaky { fails } => {
            format!("sleep 0.05; [ \"$QUEUECTL_ATTEMPT\" -gt {fails} ] || rc=1")
        }
        Kind::Failing => "sleep 0.02; rc=3".to_owned(),
        Kind::TimeoutOnce => "[ \"$QUEUECTL_ATTEMPT\" -gt 1 ] || sleep 30".to_owned(),
        Kind::TimeoutAlways => "sleep 30".to_owned(),
        Kind::Long => format!("sleep {}.{}", rng.range(1, 4), rng.range(0, 10)),
        Kind::Loud => {
            "yes 'chaos output: a line of text that fills the spool' | head -c 2000000".to_owned()
        }
    };
    let (max_retries, timeout) = match kind {
        Kind::Quick | Kind::Long | Kind::Loud => (rng.range(0, 3), None),
        Kind::Flaky { fails } => (u64::from(fails) + rng.range(0, 2), None),
        Kind::Failing => (rng.range(0, 3), None),
        Kind::TimeoutOnce => (rng.range(1, 3), Some(1.0)),
        Kind::TimeoutAlways => (rng.range(0, 2), Some(0.5)),
    };
    let id = format!("{}-{n}", kind.name());
    let log = log.display();
    let command = format!(
        "L='{log}'; rc=0; \
         echo \"S $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $PPID $(date +%s%N)\" >> \"$L\"; \
         {body}; \
         echo \"E $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $PPID $(date +%s%N) $rc\" >> \"$L\"; \
         exit $rc"
    );
    let mut spec = json!({
        "id": id,
        "command": command,
        "max_retries": max_retries,
        "env": { "QUEUECTL_CHAOS_RUN": token },
    });
    if let Some(t) = timeout {
        spec["timeout"] = json!(t);
    }
    (Plan { id, kind }, spec.to_string())
}

/// Enqueues `lines` (JSON jobs) all or none with `enqueue --file -`, retrying for up
/// to a minute: a worker stopped inside its write transaction holds SQLite's lock for
/// as long as it is stopped, and a crashed PostgreSQL server refuses connections until
/// it is back. Returns an error text if it never succeeded.
pub fn enqueue(env: &Env, lines: &[String]) -> Result<(), String> {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let mut child = env
            .cmd(&["enqueue", "--file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start enqueue: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all((lines.join("\n") + "\n").as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("enqueue: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        // Already there (a reply lost after the commit): then it did succeed.
        if last.contains("already exists") {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Err(last)
}
