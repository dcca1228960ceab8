//! The worker process: one supervisor thread that talks to the store, and one slot
//! thread per worker that runs commands.
//!
//! The supervisor is the only thread that touches the store. It folds everything it
//! has to say (finished runs, lease renewals, claims for idle slots) into one
//! transaction per round ([`Exchange`]), which is what makes group commit and batched
//! claims possible. It never sleeps while holding a job: it waits on one channel for
//! slot results, wake-ups (a commit by another process, a signal) and its timers.
//!
//! If the store fails, running jobs keep running, results are kept in memory and the
//! supervisor retries with backoff; it never exits because of a store outage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{StoreError, WorkerError};
use crate::job::{AttemptOutcome, Job, Outcome, after_attempt, after_forced_stop, after_release};
use crate::log;
use crate::store::{
    Exchange, ExchangeReply, Finished, Lease, ProcessKey, StopRequest, Store, WorkerInfo,
    WorkerState,
};
use crate::worker::exec::{self, Execution, RunHandle, Spool};
use crate::worker::{platform, recovery};

/// How a worker runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// `sh -c COMMAND`: what users get.
    Shell,
    /// Succeeds at once without starting a process: measures the queue alone.
    Noop,
}

/// What `worker start` asked for.
#[derive(Clone)]
pub struct Options {
    pub count: usize,
    /// Exit once no job is pending, processing or failed.
    pub burst: bool,
    pub executor: Executor,
    /// Print a line per job start and end.
    pub log_jobs: bool,
    /// Stop on SIGINT/SIGTERM (first: drain, second: force).
    pub handle_signals: bool,
    /// Record claim and completion latencies in the [`Summary`] (for `bench`).
    pub timings: bool,
    /// Called by the slot thread as soon as a job's process has started.
    pub on_spawn: Option<SpawnHook>,
}

/// See [`Options::on_spawn`].
pub type SpawnHook = Arc<dyn Fn(&Job) + Send + Sync>;

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("count", &self.count)
            .field("burst", &self.burst)
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

/// What a worker process did, reported when it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: u64,
    pub failed: u64,
    pub interrupted: u64,
    /// With [`Options::timings`]: for each claimed job, the round trip that claimed it.
    pub claim_latencies: Vec<Duration>,
    /// With [`Options::timings`]: for each finished job, from its end to its result
    /// being committed.
    pub completion_latencies: Vec<Duration>,
}

/// How often a recovery pass runs.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// How long an idle worker waits without any wake-up before looking anyway.
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// Poll interval when cross-process wake-ups are unavailable.
const POLL_WITHOUT_WAKEUPS: Duration = Duration::from_millis(50);
/// A worker claims its next job while the current one runs, so short jobs follow
/// each other without waiting for a store round trip. If the current job is still
/// running after this long, the claimed-ahead jobs are given back so an idle worker
/// elsewhere can take them: a job never waits behind a long one for more than this.
const PREFETCH_HOLD: Duration = Duration::from_millis(50);
/// How many jobs a slot claims ahead when its jobs are short: one round trip then
/// serves several jobs (batched claims and group commit).
const PREFETCH_DEPTH: usize = 4;
/// Jobs that take less than this are short.
const SHORT_JOB: Duration = Duration::from_millis(20);
/// How long a finished job's result may wait to share a commit with others.
const COMMIT_DELAY: Duration = Duration::from_millis(5);
/// Time a killed job's group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

enum Event {
    Done { slot: usize, execution: Execution },
    Wake,
    Signal,
}

struct Run {
    job: Job,
    started: Instant,
    /// Killed on purpose (forced stop): goes back to pending for free.
    forced: bool,
    /// The lease was lost: another worker owns the job, drop the result.
    lost: bool,
    kill_at: Option<Instant>,
}

struct Slot {
    worker_id: String,
    jobs: Option<Sender<Job>>,
    handle: Arc<RunHandle>,
    thread: Option<JoinHandle<()>>,
    run: Option<Run>,
    /// Claimed ahead, started in order as `run` ends (see [`PREFETCH_HOLD`]).
    queued: VecDeque<Job>,
    /// How long the last job took: short jobs get a deeper queue.
    last_took: Option<Duration>,
}

impl Slot {
    fn is_idle(&self) -> bool {
        self.run.is_none() && self.queued.is_empty()
    }

    fn depth(&self) -> usize {
        if self.last_took.is_some_and(|took| took < SHORT_JOB) {
            PREFETCH_DEPTH
        } else {
            1
        }
    }

    /// How many jobs to claim for this slot now: none while it holds enough, else
    /// enough to fill its queue. A slot whose job has run long claims nothing.
    fn wanted(&self, now: Instant) -> usize {
        if let Some(run) = &self.run
            && (run.forced || run.lost || now.duration_since(run.started) >= PREFETCH_HOLD)
        {
            return 0;
        }
        let depth = self.depth();
        let low_water = (depth / 2).max(1);
        if self.queued.len() < low_water {
            depth - self.queued.len()
        } else {
            0
        }
    }
}

/// Runs a worker process until it is stopped; see the module docs.
pub fn run(mut store: Box<dyn Store>, options: &Options) -> Result<Summary, WorkerError> {
    let (events, inbox) = mpsc::channel();
    let host = platform::host_name();
    let (pid, pid_start) = platform::current_process();
    let process = ProcessKey {
        host: host.clone(),
        pid,
    };
    let spool = Spool::new(store.spool_dir());
    spool
        .create()
        .map_err(|e| WorkerError::io("cannot create the spool directory", e))?;
    let poll = subscribe(store.as_ref(), &events);
    if options.handle_signals {
        forward_signals(events.clone());
    }
    let infos: Vec<WorkerInfo> = (1..=options.count)
        .map(|n| WorkerInfo {
            id: format!("{host}-{pid}-{n}"),
            host: host.clone(),
            pid,
            pid_start,
        })
        .collect();
    store.register_workers(&infos)?;
    let config = Config::from_stored(&store.settings()?);
    let slots = infos
        .iter()
        .enumerate()
        .map(|(n, info)| start_slot(n, info, options, &spool, &events))
        .collect::<Result<Vec<_>, _>>()?;
    log::info(&format!(
        "{} worker(s) started on {} (pid {pid}), store {}",
        options.count,
        host,
        store.describe()
    ));
    let mut supervisor = Supervisor {
        store,
        options: options.clone(),
        process,
        spool,
        config,
        slots,
        inbox,
        poll,
        stop: StopRequest::None,
        finished: Vec::new(),
        finished_at: Vec::new(),
        reassigned: Vec::new(),
        oldest_finished: None,
        want_claim: true,
        woken: true,
        next_beat: Instant::now(),
        next_recovery: Instant::now(),
        next_due: None,
        retry_at: None,
        retry_delay: Duration::from_millis(100),
        reconnected_at: None,
        summary: Summary::default(),
    };
    supervisor.run_loop();
    supervisor.shut_down(&infos);
    Ok(std::mem::take(&mut supervisor.summary))
}

struct Supervisor {
    store: Box<dyn Store>,
    options: Options,
    process: ProcessKey,
    spool: Spool,
    config: Config,
    slots: Vec<Slot>,
    inbox: Receiver<Event>,
    poll: Duration,
    stop: StopRequest,
    /// Results not yet recorded (kept across store outages).
    finished: Vec<Finished>,
    /// When each of `finished` ended (only with `options.timings`).
    finished_at: Vec<Instant>,
    /// Jobs that moved between slots, not yet told to the store.
    reassigned: Vec<(Lease, String)>,
    /// When the oldest of `finished` (or `reassigned`) happened (see [`COMMIT_DELAY`]).
    oldest_finished: Option<Instant>,
    want_claim: bool,
    /// Something outside may have changed (a commit elsewhere, a signal).
    woken: bool,
    next_beat: Instant,
    next_recovery: Instant,
    next_due: Option<Instant>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    /// When the store came back after an outage.
    reconnected_at: Option<Instant>,
    summary: Summary,
}

impl Supervisor {
    fn run_loop(&mut self) {
        loop {
            if self.stop != StopRequest::None && self.idle() && self.finished.is_empty() {
                return;
            }
            let now = Instant::now();
            if self.retry_at.is_none_or(|at| now >= at) {
                let claimed_all = self.exchange(now);
                if now >= self.next_recovery {
                    self.recover();
                    self.next_recovery = now + RECOVERY_INTERVAL;
                }
                if self.options.burst && claimed_all == Some(false) && self.burst_done() {
                    log::info("no job left to run (--burst); stopping");
                    self.stop = self.stop.max(StopRequest::Graceful);
                    continue;
                }
            }
            self.escalate_kills(now);
            self.wait();
        }
    }

    fn idle(&self) -> bool {
        self.slots.iter().all(Slot::is_idle)
    }

    /// One round trip. Returns whether every idle slot got a job (`None`: no claim
    /// was attempted).
    fn exchange(&mut self, now: Instant) -> Option<bool> {
        let beat = now >= self.next_beat;
        self.release_stale_prefetches(now);
        self.rebalance();
        let claim_for: Vec<String> = if self.stop == StopRequest::None && self.want_claim {
            // Idle slots first: the store hands out jobs in this order.
            let idle = self.slots.iter().filter(|s| s.is_idle());
            let busy = self.slots.iter().filter(|s| !s.is_idle());
            idle.chain(busy)
                .flat_map(|s| std::iter::repeat_n(s.worker_id.clone(), s.wanted(now)))
                .collect()
        } else {
            Vec::new()
        };
        let commit_due = self.oldest_finished.is_some_and(|at| {
            now.duration_since(at) >= COMMIT_DELAY || self.stop != StopRequest::None
        });
        if !commit_due && !beat && claim_for.is_empty() && !self.woken {
            return None;
        }
        let renew: Vec<Lease> = if beat {
            let running = self.slots.iter().filter_map(|s| s.run.as_ref());
            let queued = self.slots.iter().flat_map(|s| s.queued.iter());
            running
                .filter(|r| !r.lost)
                .map(|r| lease_of(&r.job))
                .chain(queued.map(lease_of))
                .collect()
        } else {
            Vec::new()
        };
        let result = self.store.exchange(&Exchange {
            finished: &self.finished,
            renew: &renew,
            process: Some(&self.process),
            beat,
            claim_for: &claim_for,
            reassign: &self.reassigned,
            lease_timeout: self.config.lease_timeout,
        });
        match result {
            Ok(reply) => {
                self.store_recovered(now);
                self.woken = false;
                self.finished.clear();
                self.reassigned.clear();
                self.oldest_finished = None;
                if self.options.timings {
                    let committed = Instant::now();
                    let claim = committed - now;
                    self.summary
                        .completion_latencies
                        .extend(self.finished_at.drain(..).map(|at| committed - at));
                    self.summary
                        .claim_latencies
                        .extend(reply.claimed.iter().map(|_| claim));
                }
                if beat {
                    self.next_beat = now + self.config.heartbeat_interval;
                    self.refresh_config();
                }
                let claimed_all = reply.claimed.len() == claim_for.len();
                self.want_claim = !claim_for.is_empty() && claimed_all;
                self.apply(reply, !claim_for.is_empty());
                (!claim_for.is_empty()).then_some(claimed_all)
            }
            Err(e) => {
                self.store_failed(now, &e);
                None
            }
        }
    }

    fn apply(&mut self, reply: ExchangeReply, claimed: bool) {
        for lease in &reply.rejected {
            log::warn(&format!(
                "job {}: result not recorded, the lease was taken over by another worker",
                lease.job_id
            ));
        }
        for lease in &reply.lost {
            self.lose(lease);
        }
        if reply.stop > self.stop {
            self.request_stop(reply.stop, "stop requested by `queuectl worker stop`");
        }
        if claimed {
            self.next_due = reply.next_due_in.map(|d| Instant::now() + d);
        }
        for (worker_id, job) in reply.claimed {
            self.dispatch(&worker_id, job);
        }
        self.rebalance();
    }

    fn dispatch(&mut self, worker_id: &str, job: Job) {
        let Some(index) = self.slots.iter().position(|s| s.worker_id == worker_id) else {
            return;
        };
        if self.slots[index].run.is_some() {
            self.slots[index].queued.push_back(job);
            return;
        }
        self.start(index, job);
    }

    /// Hands `job` to the slot's thread.
    fn start(&mut self, index: usize, job: Job) {
        let slot = &mut self.slots[index];
        if self.options.log_jobs {
            log::info(&format!(
                "[{}] start job {} (attempt {}): {}",
                slot.worker_id,
                job.id,
                job.attempts + 1,
                one_line(&job.command)
            ));
        }
        slot.run = Some(Run {
            job: job.clone(),
            started: Instant::now(),
            forced: false,
            lost: false,
            kill_at: None,
        });
        if let Some(jobs) = &slot.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Another worker owns this job now: stop our copy of it at once.
    fn lose(&mut self, lease: &Lease) {
        for slot in &mut self.slots {
            slot.queued.retain(|j| lease_of(j) != *lease);
            let Some(run) = slot.run.as_mut() else {
                continue;
            };
            if lease_of(&run.job) == *lease && !run.lost {
                log::warn(&format!(
                    "job {}: lease lost (another worker took it over); killing this run",
                    lease.job_id
                ));
                run.lost = true;
                kill(slot.handle.as_ref(), run);
            }
        }
    }

    fn request_stop(&mut self, stop: StopRequest, why: &str) {
        self.stop = self.stop.max(stop);
        for index in 0..self.slots.len() {
            self.release_queued(index);
        }
        match self.stop {
            StopRequest::Force => {
                log::info(&format!(
                    "{why}: killing running jobs, they go back to pending"
                ));
                for slot in &mut self.slots {
                    if let Some(run) = slot.run.as_mut().filter(|r| !r.forced) {
                        run.forced = true;
                        kill(slot.handle.as_ref(), run);
                    }
                }
            }
            StopRequest::Graceful => log::info(&format!(
                "{why}: finishing running jobs, then exiting (stop again to kill them)"
            )),
            StopRequest::None => {}
        }
    }

    /// Idle slots take jobs claimed ahead by busy ones, so no job waits behind
    /// another while a slot of this process has nothing to do. The store learns of
    /// the move with the next commit.
    fn rebalance(&mut self) {
        loop {
            let Some(idle) = self.slots.iter().position(Slot::is_idle) else {
                return;
            };
            let donor = (0..self.slots.len())
                .filter(|&i| !self.slots[i].queued.is_empty())
                .max_by_key(|&i| self.slots[i].queued.len());
            let Some(mut job) = donor.and_then(|d| self.slots[d].queued.pop_back()) else {
                return;
            };
            let thief = self.slots[idle].worker_id.clone();
            self.reassigned.push((lease_of(&job), thief.clone()));
            self.oldest_finished.get_or_insert_with(Instant::now);
            job.worker_id = Some(thief);
            self.start(idle, job);
        }
    }

    /// Gives back jobs claimed ahead for slots whose current job runs long.
    fn release_stale_prefetches(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let stale = slot
                .run
                .as_ref()
                .is_some_and(|r| now.duration_since(r.started) >= PREFETCH_HOLD);
            if stale && !slot.queued.is_empty() {
                self.release_queued(index);
            }
        }
    }

    fn release_queued(&mut self, index: usize) {
        let worker_id = self.slots[index].worker_id.clone();
        let queued: Vec<Job> = self.slots[index].queued.drain(..).collect();
        for job in queued {
            self.record(Finished {
                lease: lease_of(&job),
                worker_id: Some(worker_id.clone()),
                outcome: AttemptOutcome::Released,
                transition: after_release(&job),
                output_tail: None,
                only_if_expired: false,
            });
        }
    }

    /// Queues a result for the next commit.
    fn record(&mut self, finished: Finished) {
        let now = Instant::now();
        self.oldest_finished.get_or_insert(now);
        if self.options.timings {
            self.finished_at.push(now);
        }
        self.finished.push(finished);
    }

    fn escalate_kills(&mut self, now: Instant) {
        for slot in &mut self.slots {
            if let Some(run) = slot.run.as_mut()
                && run.kill_at.is_some_and(|at| now >= at)
            {
                slot.handle.signal(libc::SIGKILL);
                run.kill_at = None;
            }
        }
    }

    fn recover(&mut self) {
        let settled = self
            .reconnected_at
            .is_none_or(|at| at.elapsed() >= self.config.lease_timeout);
        let host = self.process.host.clone();
        if let Err(e) = recovery::recover(self.store.as_mut(), &host, &self.spool, settled) {
            self.store_failed(Instant::now(), &e);
        }
    }

    fn burst_done(&mut self) -> bool {
        if !self.idle() || !self.finished.is_empty() {
            return false;
        }
        match self.store.counts() {
            Ok(counts) => counts
                .by_state
                .iter()
                .all(|(state, n)| *n == 0 || !state.is_unfinished()),
            Err(e) => {
                self.store_failed(Instant::now(), &e);
                false
            }
        }
    }

    fn refresh_config(&mut self) {
        if let Ok(settings) = self.store.settings() {
            self.config = Config::from_stored(&settings);
        }
    }

    fn store_failed(&mut self, now: Instant, e: &StoreError) {
        if self.retry_at.is_none() {
            log::warn(&format!(
                "store unavailable ({e}); running jobs continue, retrying with backoff"
            ));
        }
        self.retry_at = Some(now + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(STORE_RETRY_MAX);
    }

    fn store_recovered(&mut self, now: Instant) {
        if self.retry_at.take().is_some() {
            log::info("store reachable again");
            self.reconnected_at = Some(now);
        }
        self.retry_delay = Duration::from_millis(100);
    }

    /// Waits for the next event or timer, then handles everything that arrived.
    fn wait(&mut self) {
        let now = Instant::now();
        let mut store_timers = vec![self.next_beat, self.next_recovery];
        store_timers.extend(self.next_due);
        store_timers.extend(self.oldest_finished.map(|at| at + COMMIT_DELAY));
        let mut kill_timers = Vec::new();
        for slot in &self.slots {
            let Some(run) = slot.run.as_ref() else {
                continue;
            };
            kill_timers.extend(run.kill_at);
            if !slot.queued.is_empty() {
                store_timers.push(run.started + PREFETCH_HOLD);
            }
        }
        let mut deadline = now + self.poll;
        for at in store_timers {
            // While the store is down, store work cannot happen before the retry:
            // waiting for an overdue timer would spin on the CPU.
            deadline = deadline.min(self.retry_at.map_or(at, |retry| at.max(retry)));
        }
        for at in kill_timers.into_iter().chain(self.retry_at) {
            deadline = deadline.min(at);
        }
        let first = match self
            .inbox
            .recv_timeout(deadline.saturating_duration_since(now))
        {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.stop = StopRequest::Force;
                None
            }
        };
        if first.is_none() {
            // A timer fired: a retry may be due, or a wake-up was missed.
            self.want_claim = true;
            if self.next_due.is_some_and(|at| Instant::now() >= at) {
                self.next_due = None;
            }
        }
        let rest = std::iter::from_fn(|| self.inbox.try_recv().ok());
        let events: Vec<Event> = first.into_iter().chain(rest).collect();
        for event in events {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Done { slot, execution } => self.finish(slot, execution),
            Event::Wake => {
                // Our own commits wake us too. While every slot is busy those wake-ups
                // are skipped unless another connection committed. With a slot free
                // every wake-up is taken: the event can arrive while another
                // process's commit is still in flight, before it is visible.
                let slot_free = self.slots.iter().any(Slot::is_idle);
                if slot_free || self.store.changed_elsewhere() {
                    self.woken = true;
                    self.want_claim = true;
                }
            }
            Event::Signal => {
                let next = if self.stop == StopRequest::None {
                    StopRequest::Graceful
                } else {
                    StopRequest::Force
                };
                self.request_stop(next, "signal received");
            }
        }
    }

    fn finish(&mut self, index: usize, execution: Execution) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let Some(run) = slot.run.take() else {
            return;
        };
        let worker_id = slot.worker_id.clone();
        slot.last_took = Some(run.started.elapsed());
        if let Some(next) = slot.queued.pop_front() {
            self.start(index, next);
        } else {
            self.rebalance();
        }
        self.want_claim = true;
        let job = &run.job;
        let took = run.started.elapsed();
        if run.lost {
            self.summary.interrupted += 1;
            return;
        }
        let (outcome, transition) = if run.forced {
            self.summary.interrupted += 1;
            let reason = "stopped by force (worker stop --force or a second signal)";
            (
                AttemptOutcome::Interrupted,
                after_forced_stop(job.attempts, job.interruptions, reason),
            )
        } else {
            if matches!(execution.outcome, Outcome::Failed { .. }) {
                // backoff-base is read when a failure happens.
                self.refresh_config();
            }
            let outcome = AttemptOutcome::of(&execution.outcome);
            match outcome {
                AttemptOutcome::Succeeded => self.summary.succeeded += 1,
                AttemptOutcome::Failed => self.summary.failed += 1,
                AttemptOutcome::Interrupted | AttemptOutcome::Released => {
                    self.summary.interrupted += 1
                }
            }
            (
                outcome,
                after_attempt(
                    job.attempts,
                    job.max_retries,
                    job.interruptions,
                    &execution.outcome,
                    &self.config.backoff,
                ),
            )
        };
        if self.options.log_jobs {
            let result = match &execution.outcome {
                Outcome::Succeeded => "exit 0".to_owned(),
                Outcome::Failed { error, .. } => error.clone(),
                Outcome::Interrupted { reason } => reason.clone(),
            };
            log::info(&format!(
                "[{worker_id}] end job {} (attempt {}): {result} after {} ms; now {}",
                job.id,
                job.attempts + 1,
                took.as_millis(),
                transition.state
            ));
        }
        self.record(Finished {
            lease: lease_of(job),
            worker_id: Some(worker_id),
            outcome,
            transition,
            output_tail: execution.output_tail,
            only_if_expired: false,
        });
    }

    /// Records what is left, deregisters the workers and joins the slot threads.
    fn shut_down(&mut self, infos: &[WorkerInfo]) {
        let ids: Vec<String> = infos.iter().map(|w| w.id.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let flushed = self.finished.is_empty()
                || self
                    .store
                    .exchange(&Exchange {
                        finished: &self.finished,
                        lease_timeout: self.config.lease_timeout,
                        ..Exchange::default()
                    })
                    .is_ok();
            if flushed {
                self.finished.clear();
                if self.store.end_workers(&ids, WorkerState::Stopped).is_ok() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                log::warn("could not record the final results; the store will recover the jobs");
                break;
            }
            thread::sleep(self.retry_delay);
            self.retry_delay = (self.retry_delay * 2).min(STORE_RETRY_MAX);
        }
        for slot in &mut self.slots {
            slot.jobs = None;
            if let Some(thread) = slot.thread.take() {
                let _ = thread.join();
            }
        }
        log::info(&format!(
            "workers stopped: {} succeeded, {} failed, {} interrupted",
            self.summary.succeeded, self.summary.failed, self.summary.interrupted
        ));
    }
}

fn kill(handle: &RunHandle, run: &mut Run) {
    handle.signal(libc::SIGTERM);
    run.kill_at = Some(Instant::now() + KILL_GRACE);
}

fn lease_of(job: &Job) -> Lease {
    Lease {
        job_id: job.id.clone(),
        token: job.lease_token,
    }
}

fn one_line(command: &str) -> String {
    let line = command.lines().next().unwrap_or_default();
    if line.len() < command.len() {
        format!("{line} ...")
    } else {
        line.to_owned()
    }
}

fn start_slot(
    index: usize,
    info: &WorkerInfo,
    options: &Options,
    spool: &Spool,
    events: &Sender<Event>,
) -> Result<Slot, WorkerError> {
    let (jobs, inbox) = mpsc::channel::<Job>();
    let handle = Arc::new(RunHandle::default());
    let thread_handle = Arc::clone(&handle);
    let spool = spool.clone();
    let events = events.clone();
    let executor = options.executor;
    let on_spawn = options.on_spawn.clone();
    let mut files = spool
        .slot_files(&info.id)
        .map_err(|e| WorkerError::io("cannot create files in the spool", e))?;
    let thread = thread::Builder::new()
        .name(info.id.clone())
        .spawn(move || {
            while let Ok(job) = inbox.recv() {
                let spawned = || {
                    if let Some(hook) = &on_spawn {
                        hook(&job);
                    }
                };
                let execution = match executor {
                    Executor::Shell => exec::run_shell(
                        &job,
                        job.lease_token,
                        &spool,
                        &mut files,
                        &thread_handle,
                        &spawned,
                    ),
                    Executor::Noop => {
                        spawned();
                        Execution {
                            outcome: Outcome::Succeeded,
                            output_tail: None,
                        }
                    }
                };
                if events
                    .send(Event::Done {
                        slot: index,
                        execution,
                    })
                    .is_err()
                {
                    return;
                }
            }
        })
        .map_err(|e| WorkerError::io("cannot start a worker thread", e))?;
    Ok(Slot {
        worker_id: info.id.clone(),
        jobs: Some(jobs),
        handle,
        thread: Some(thread),
        run: None,
        queued: VecDeque::new(),
        last_took: None,
    })
}

/// Starts cross-process wake-ups; returns the idle poll interval to use.
fn subscribe(store: &dyn Store, events: &Sender<Event>) -> Duration {
    let events = events.clone();
    let wake = Arc::new(move || {
        let _ = events.send(Event::Wake);
    });
    match store.subscribe(wake) {
        Ok(()) => POLL_FALLBACK,
        Err(e) => {
            log::warn(&format!(
                "no wake-ups from the store ({e}); polling every {} ms",
                POLL_WITHOUT_WAKEUPS.as_millis()
            ));
            POLL_WITHOUT_WAKEUPS
        }
    }
}

fn forward_signals(events: Sender<Event>) {
    let signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM]);
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            log::warn(&format!("cannot handle signals: {e}"));
            return;
        }
    };
    let spawned = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if events.send(Event::Signal).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        log::warn(&format!("cannot handle signals: {e}"));
    }
}
