//! The fault driver: a pool of `queuectl worker start` processes that it SIGKILLs,
//! SIGSTOPs and SIGCONTs, SIGTERMs (once to drain, twice to force) and restarts, and
//! on PostgreSQL the connections it kills and the server it restarts.
//!
//! Every fault is counted by kind; every SIGKILL is recorded with its time, so the
//! checker can tell how long recovery took. A worker that exits without being told to,
//! or does not finish draining in time, is an anomaly.
//!
//! SIGSTOP pauses are short (at most 1.5 s): a worker stopped inside its SQLite write
//! transaction keeps the write lock (issue #15, defect 1: SIGSTOP cannot be caught),
//! so everyone else waits for it; a pause shorter than the 20 s busy timeout and the
//! 10 s lease slows the run without failing it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::pg::PgFaults;
use crate::rng::Rng;

/// Unix time in microseconds (the run log's and the store's clock).
pub fn now_us() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// One SIGKILL: which worker process, and when.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub pid: u32,
    pub at_us: i64,
}

/// What the driver did and saw.
#[derive(Debug, Default)]
pub struct Faults {
    pub kills: Vec<Kill>,
    pub counts: BTreeMap<&'static str, u64>,
    pub anomalies: Vec<String>,
    pub workers_started: u64,
    /// PostgreSQL faults (connections killed, server down): from, to (µs).
    pub store_faults: Vec<(i64, i64)>,
}

impl Faults {
    fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }
}

enum State {
    Running,
    Stopped {
        until: Instant,
    },
    Terminating {
        since: Instant,
        again_at: Option<Instant>,
        forced: bool,
    },
}

struct Worker {
    child: Child,
    state: State,
    log: PathBuf,
    started: Instant,
}

/// A SIGTERM this soon after a worker started may come before its signal handlers
/// are installed: it then dies of the signal instead of draining, which is fine.
const STARTUP: Duration = Duration::from_secs(3);

/// How long a draining worker may take: its longest job (4 s) or a timed-out job's
/// grace (5 s), with room for a loaded machine.
const DRAIN_LIMIT: Duration = Duration::from_secs(40);

/// The worker processes, one per slot; an empty slot has a restart time.
pub struct Pool {
    slots: Vec<Option<Worker>>,
    restart_at: Vec<Option<Instant>>,
    per_worker: u32,
    db: String,
    pub faults: Faults,
    /// `faults.log`: one line per fault (Unix µs, what, worker pid), kept as evidence.
    journal: Option<std::fs::File>,
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill takes plain integers and touches no memory of ours; `pid` is a
        // child of ours not yet reaped, so it cannot name another process.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Appends a line to the fault journal.
fn note(journal: &mut Option<std::fs::File>, what: &str, pid: u32) {
    if let Some(f) = journal {
        let _ = writeln!(f, "{} {what} {pid}", now_us());
    }
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

impl Pool {
    /// `count` worker processes of `per_worker` slots each, on store `db` (on
    /// PostgreSQL the URL names the application, so their connections can be found).
    pub fn new(count: usize, per_worker: u32, db: String, dir: &std::path::Path) -> Pool {
        Pool {
            slots: (0..count).map(|_| None).collect(),
            restart_at: vec![Some(Instant::now()); count],
            per_worker,
            db,
            faults: Faults::default(),
            journal: std::fs::File::create(dir.join("faults.log")).ok(),
        }
    }

    fn spawn(&mut self, env: &Env, slot: usize) {
        self.faults.workers_started += 1;
        let started_note = self.faults.workers_started;
        let dir = env.path().join("workers");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("w{}-{}.log", slot, self.faults.workers_started));
        let Ok(file) = std::fs::File::create(&log) else {
            return;
        };
        let count = self.per_worker.to_string();
        let child = env
            .cmd(&["worker", "start", "--count", &count])
            .env("QUEUECTL_DB", &self.db)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start a worker");
        note(
            &mut self.journal,
            &format!("start(w{slot}-{started_note})"),
            child.id(),
        );
        self.slots[slot] = Some(Worker {
            child,
            state: State::Running,
            log,
            started: Instant::now(),
        });
        self.restart_at[slot] = None;
    }

    /// Resumes stopped workers whose pause is over, sends due second SIGTERMs, reaps
    /// exited workers (an exit nobody asked for is an anomaly) and restarts empty
    /// slots whose time has come.
    pub fn tend(&mut self, env: &Env, rng: &mut Rng) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let mut vacate = false;
            if let Some(w) = &mut self.slots[slot] {
                let pid = w.child.id();
                match &mut w.state {
                    State::Stopped { until } if *until <= now => {
                        signal(pid, libc::SIGCONT);
                        note(&mut self.journal, "sigcont", pid);
                        w.state = State::Running;
                    }
                    State::Terminating {
                        again_at, forced, ..
                    } if again_at.is_some_and(|t| t <= now) => {
                        signal(pid, libc::SIGTERM);
                        note(&mut self.journal, "sigterm-again", pid);
                        *again_at = None;
                        *forced = true;
                        self.faults.count("sigterm-twice (kill running jobs)");
                    }
                    _ => {}
                }
                match w.child.try_wait() {
                    Ok(Some(status)) => {
                        note(&mut self.journal, &format!("exited({status})"), pid);
                        // A forced stop (second SIGTERM) may exit non-zero.
                        let (asked, forced) = match w.state {
                            State::Terminating { forced, .. } => (true, forced),
                            _ => (false, false),
                        };
                        let early = status.signal() == Some(libc::SIGTERM)
                            && w.started.elapsed() < STARTUP + DRAIN_LIMIT
                            && matches!(w.state, State::Terminating { since, .. } if since.duration_since(w.started) < STARTUP);
                        let text = std::fs::read_to_string(&w.log).unwrap_or_default();
                        // `worker start` gives up (exit 1) when its PostgreSQL
                        // connection fails before it has started (RELIABILITY.md,
                        // "Findings"); once started it rides out store faults.
                        let gave_up_starting = status.code() == Some(1)
                            && !text.contains("started on")
                            && text.contains("PostgreSQL");
                        if gave_up_starting {
                            self.faults.count("worker gave up starting (store fault)");
                        } else if !asked || (!forced && !early && !status.success()) {
                            self.faults.anomalies.push(format!(
                                "worker {pid} exited by itself ({status}), asked to stop: {asked}; log:\n{}",
                                tail(&w.log)
                            ));
                        }
                        vacate = true;
                    }
                    Ok(None) => {
                        if let State::Terminating { since, .. } = w.state
                            && now.duration_since(since) > DRAIN_LIMIT
                        {
                            self.faults.anomalies.push(format!(
                                "worker {pid} still draining {DRAIN_LIMIT:?} after SIGTERM; killed; log:\n{}",
                                tail(&w.log)
                            ));
                            self.sigkill(slot);
                        }
                    }
                    Err(_) => vacate = true,
                }
            }
            if vacate {
                self.slots[slot] = None;
                self.restart_at[slot] = Some(now + Duration::from_millis(rng.range(0, 1000)));
            }
            if self.slots[slot].is_none() && self.restart_at[slot].is_some_and(|t| t <= now) {
                self.spawn(env, slot);
            }
        }
    }

    fn sigkill(&mut self, slot: usize) {
        if let Some(mut w) = self.slots[slot].take() {
            let pid = w.child.id();
            note(&mut self.journal, "sigkill", pid);
            self.faults.kills.push(Kill {
                pid,
                at_us: now_us(),
            });
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }

    /// Slots whose worker is in a state `filter` accepts.
    fn pick(&self, rng: &mut Rng, filter: impl Fn(&State) -> bool) -> Option<usize> {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].as_ref().is_some_and(|w| filter(&w.state)))
            .collect();
        (!live.is_empty()).then(|| live[rng.range(0, live.len() as u64) as usize])
    }

    /// One fault, chosen at random among those that apply.
    pub fn inject(&mut self, rng: &mut Rng, pg: Option<&mut PgFaults>) {
        let pg_weights = match &pg {
            Some(p) => [15, if p.can_restart() { 3 } else { 0 }],
            None => [0, 0],
        };
        let now = Instant::now();
        match rng.weighted(&[45, 12, 20, pg_weights[0], pg_weights[1]]) {
            0 => {
                if let Some(slot) = self.pick(rng, |_| true) {
                    self.sigkill(slot);
                    self.restart_at[slot] = Some(now + Duration::from_millis(rng.range(0, 1500)));
                    self.faults.count("sigkill");
                }
            }
            1 => {
                if let Some(slot) = self.pick(rng, |s| matches!(s, State::Running))
                    && let Some(w) = &mut self.slots[slot]
                {
                    signal(w.child.id(), libc::SIGTERM);
                    note(&mut self.journal, "sigterm", w.child.id());
                    let again_at = rng
                        .chance(0.3)
                        .then(|| now + Duration::from_millis(rng.range(100, 1500)));
                    w.state = State::Terminating {
                        since: now,
                        again_at,
                        forced: false,
                    };
                    self.faults.count("sigterm (drain)");
                }
            }
            2 => {
                if let Some(slot) = self.pick(rng, |s| matches!(s, State::Running))
                    && let Some(w) = &mut self.slots[slot]
                {
                    signal(w.child.id(), libc::SIGSTOP);
                    note(&mut self.journal, "sigstop", w.child.id());
                    w.state = State::Stopped {
                        until: now + Duration::from_millis(rng.range(100, 1500)),
                    };
                    self.faults.count("sigstop+sigcont");
                }
            }
            3 => {
                if let Some(pg) = pg {
                    let from = now_us();
                    let result = pg.terminate_connections();
                    self.faults.store_faults.push((from, now_us()));
                    note(&mut self.journal, "pg_terminate_backend", 0);
                    match result {
                        Ok(n) => {
                            self.faults.count("pg_terminate_backend");
                            *self.faults.counts.entry("connections killed").or_default() += n;
                        }
                        Err(e) => self.faults.anomalies.push(e),
                    }
                }
            }
            _ => {
                if let Some(pg) = pg {
                    let from = now_us();
                    note(&mut self.journal, "postgres-down", 0);
                    let result = pg.restart(Duration::from_millis(rng.range(200, 3000)));
                    self.faults.store_faults.push((from, now_us()));
                    note(&mut self.journal, "postgres-up", 0);
                    match result {
                        Ok(()) => self.faults.count("postgres restart"),
                        Err(e) => self.faults.anomalies.push(e),
                    }
                }
            }
        }
    }

    /// Ends the faults: resumes stopped workers, lets draining ones finish, restarts
    /// every empty slot.
    pub fn calm(&mut self, env: &Env, rng: &mut Rng) {
        for w in self.slots.iter_mut().flatten() {
            if let State::Stopped { until } = &mut w.state {
                *until = Instant::now();
            }
            if let State::Terminating { again_at, .. } = &mut w.state {
                *again_at = None;
            }
        }
        for t in self.restart_at.iter_mut().flatten() {
            *t = Instant::now();
        }
        self.tend(env, rng);
    }

    /// Stops every worker with SIGTERM and waits for it; a worker that does not exit 0
    /// within the drain limit is an anomaly.
    pub fn stop_all(&mut self) {
        for w in self.slots.iter_mut().flatten() {
            if matches!(w.state, State::Stopped { .. }) {
                signal(w.child.id(), libc::SIGCONT);
            }
            signal(w.child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + DRAIN_LIMIT;
        for slot in 0..self.slots.len() {
            let Some(mut w) = self.slots[slot].take() else {
                continue;
            };
            loop {
                match w.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            self.faults.anomalies.push(format!(
                                "worker {} exited {status} on the final SIGTERM; log:\n{}",
                                w.child.id(),
                                tail(&w.log)
                            ));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        self.faults.anomalies.push(format!(
                            "worker {} did not stop on the final SIGTERM",
                            w.child.id()
                        ));
                        let _ = w.child.kill();
                        let _ = w.child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in self.slots.iter_mut().flatten() {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}
