//! The worker process: one supervisor thread that talks to the store and starts
//! and reaps the job's shells of every slot ([`SlotRunner`]).
//!
//! The supervisor is the only thread that touches the store. It folds everything it
//! has to say (finished runs, lease renewals, claims for idle slots) into one
//! transaction per round ([`Exchange`]), which is what makes group commit and batched
//! claims possible. It never sleeps while holding a job: it waits in one `ppoll` for
//! its shells' exits, wake-ups (a commit by another process, a signal) and its
//! timers ([`events::Inbox`]).
//!
//! If the store fails, running jobs keep running, results are kept in memory and the
//! supervisor retries with backoff; it never exits because of a store outage.
//!
//! This module is the round loop. What it asks and delegates lives beside it, in
//! `worker::`: which jobs to claim for which slot (`slots`), what waits for a commit
//! (`outbox`), when to retry the store (`store_retry`), what a run's end means
//! (`run_report`, `stopping`), what runs each slot's jobs (`slot_runner`) and
//! background cleaning (`retention`). Parts of the round have files of their own:
//! starting runs and moving jobs between slots ([`runs`]), stopping runs at their
//! deadline or on a cancel ([`stops`]), shipping the output
//! of long runs and capping their spool files ([`shipping`]), squaring the books
//! with the store after a lost reply ([`reconciling`]), waiting for the next event
//! or timer ([`waiting`]), settling a run's end ([`finishing`]), enqueueing the runs
//! of recurring jobs ([`cron_tick`]), and stopping the process
//! on a signal, `worker stop` or `--burst`, then shutting down ([`exit`]). What the
//! process does is also reported, as it happens, to the sink of
//! [`Options::on_notice`] (`worker::notice`).

mod cron_tick;
mod exit;
mod finishing;
mod reconciling;
mod runs;
mod shipping;
mod stops;
mod waiting;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::WorkerError;
use crate::log;
use crate::store::{
    Duty, Exchange, ExchangeReply, Lease, ProcessKey, StopRequest, Store, WorkerInfo,
};
use crate::worker::events::{self, Inbox};
use crate::worker::exec::Execution;
use crate::worker::guard::Guard;
use crate::worker::notice::{Notice, StopReason};
use crate::worker::options::{Executor, Options, Summary};
use crate::worker::outbox::Outbox;
use crate::worker::retention::Retention;
use crate::worker::slot_runner::SlotRunner;
use crate::worker::slots::Slots;
use crate::worker::spool::Spool;
use crate::worker::spool_space::SpoolSpace;
use crate::worker::store_retry::StoreRetry;
use crate::worker::{platform, recovery};

/// How often a recovery pass runs.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// How often an idle process not on duty claims on a timer (a safety net: the
/// process on duty gets the wake-ups, DECISIONS §26).
const OFF_DUTY_POLL: Duration = Duration::from_secs(5);

/// Runs a worker process until it is stopped; see the module docs.
pub fn run(mut store: Box<dyn Store>, options: &Options) -> Result<Summary, WorkerError> {
    let (events, inbox) =
        events::channel().map_err(|e| WorkerError::io("cannot create the worker's inbox", e))?;
    let host = platform::host_name();
    let (pid, pid_start) = platform::current_process();
    let process = ProcessKey {
        host: host.clone(),
        pid,
    };
    let spool = Spool::new(store.spool_dir());
    spool.create()?;
    let duty = Arc::new(Duty::new(options.queues.as_deref()));
    let poll = events::subscribe(store.as_ref(), &events, &duty);
    if options.handle_signals {
        events::forward_signals(events.clone());
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
    let guard = start_guard(options);
    let runners = infos
        .iter()
        .enumerate()
        .map(|(n, info)| {
            let cell = guard.as_ref().and_then(|g| g.cell(n));
            SlotRunner::new(info, options, &spool, cell)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slots = Slots::new(infos.iter().map(|info| info.id.clone()));
    let described = store.describe();
    log::started(&format!(
        "{} worker(s) started on {} (pid {pid}), store {described}",
        options.count, host,
    ));
    let ids: Vec<String> = infos.iter().map(|info| info.id.clone()).collect();
    if let Some(sink) = &options.on_notice {
        sink(&Notice::Started {
            host: &host,
            pid,
            workers: &ids,
            store: &described,
        });
    }
    let mut supervisor = Supervisor {
        store,
        options: options.clone(),
        process,
        spool,
        config,
        slots,
        runners,
        ended_at_once: Vec::new(),
        inbox,
        poll,
        duty,
        next_timer_claim: Instant::now(),
        stop: StopRequest::None,
        outbox: Outbox::new(options.timings),
        want_claim: true,
        full_claim: true,
        woken: true,
        next_beat: Instant::now(),
        next_recovery: Instant::now(),
        next_due: None,
        ship_grid: Instant::now(),
        retention: Retention::new(Instant::now()),
        cron: cron_tick::CronClock::new(Instant::now()),
        store_retry: StoreRetry::default(),
        in_doubt: false,
        spool_space: SpoolSpace::new(Instant::now()),
        next_cap: Instant::now(),
        summary: Summary::default(),
        guard,
    };
    supervisor.run_loop();
    supervisor.shut_down(&infos);
    Ok(std::mem::take(&mut supervisor.summary))
}

/// The attempt guard of a worker that runs shells ([`crate::worker::guard`]). A
/// worker whose guard cannot start still runs, with a warning: the run markers let
/// recovery on this host kill leftovers, but not a recovery on another host.
fn start_guard(options: &Options) -> Option<Guard> {
    if options.executor != Executor::Shell {
        return None;
    }
    match Guard::start(options.count) {
        Ok(guard) => Some(guard),
        Err(e) => {
            log::warn(&format!(
                "cannot start the attempt guard ({e}): if this worker dies, what its jobs \
                 started in the background keeps running"
            ));
            None
        }
    }
}

struct Supervisor {
    store: Box<dyn Store>,
    options: Options,
    process: ProcessKey,
    spool: Spool,
    config: Config,
    /// What each slot holds, and what it wants claimed.
    slots: Slots,
    /// What runs each slot's jobs, in the same order as `slots`.
    runners: Vec<SlotRunner>,
    /// Runs that ended as they were handed over (the noop executor, a shell that
    /// could not start), settled at the next wait.
    ended_at_once: Vec<(usize, Execution)>,
    inbox: Inbox,
    poll: Duration,
    /// Whether this process is on duty for one-job wake-ups (PostgreSQL), and
    /// whether it has a free slot (DECISIONS §26).
    duty: Arc<Duty>,
    /// Off duty, a timer claims no earlier than this ([`OFF_DUTY_POLL`]).
    next_timer_claim: Instant,
    stop: StopRequest,
    /// Results and moves not yet committed (kept across store outages).
    outbox: Outbox,
    want_claim: bool,
    /// Something other than a run of ours ending asked for a claim since the last
    /// one: a wake-up, a timer, a recovery, or the last claim filled every slot.
    /// Without it, a process on duty lets the store skip the claim of a round trip
    /// whose finished runs free nothing (`Exchange::claim_if_freed`, DECISIONS §26).
    full_claim: bool,
    /// Something outside may have changed (a commit elsewhere, a signal).
    woken: bool,
    next_beat: Instant,
    next_recovery: Instant,
    next_due: Option<Instant>,
    /// Runs ship again on the ticks of one grid (this instant plus whole
    /// [`SHIP_EVERY`]s), so all long runs of the process share one round trip.
    ship_grid: Instant,
    retention: Retention,
    /// When to fire recurring jobs ([`cron_tick`]).
    cron: cron_tick::CronClock,
    store_retry: StoreRetry,
    /// A round trip that wrote failed without a reply: it may have committed, so
    /// the books are squared with the store before the next one ([`reconciling`]).
    in_doubt: bool,
    /// Whether the spool's disk is full (claims wait for space).
    spool_space: SpoolSpace,
    /// When the working files of running attempts are capped next
    /// ([`shipping::CAP_EVERY`]).
    next_cap: Instant,
    summary: Summary,
    /// Kills the running attempts' process groups if this process dies; dropped
    /// (told the worker is done) once no shell runs any more.
    guard: Option<Guard>,
}

impl Supervisor {
    fn run_loop(&mut self) {
        loop {
            if self.stop != StopRequest::None
                && self.slots.all_idle()
                && self.outbox.has_no_results()
            {
                return;
            }
            let now = Instant::now();
            if let Some(guard) = &mut self.guard {
                guard.keep_alive(now);
            }
            if self.store_retry.may_try(now) {
                self.fire_cron(now);
                let claimed_all = self.exchange(now);
                let mut recovered = false;
                if now >= self.next_recovery {
                    recovered = self.recover();
                    self.next_recovery = now + RECOVERY_INTERVAL;
                }
                self.retention
                    .clean_if_due(self.store.as_mut(), self.config.retention, now);
                // A job recovered after the claim came up short is pending again:
                // claim once more before a burst may end.
                if self.options.burst
                    && claimed_all == Some(false)
                    && !recovered
                    && self.burst_done()
                {
                    self.request_stop(StopRequest::Graceful, StopReason::Burst);
                    continue;
                }
            }
            self.cap_spool(now);
            self.mark_runs(now);
            self.enforce_deadlines(now);
            self.escalate_kills(now);
            self.wait();
        }
    }

    /// One round trip. Returns whether every idle slot got a job (`None`: no claim
    /// was attempted).
    fn exchange(&mut self, now: Instant) -> Option<bool> {
        if self.in_doubt && !self.reconcile(now) {
            return None;
        }
        let beat = now >= self.next_beat;
        self.release_stale_prefetches(now);
        self.rebalance();
        let claim_for: Vec<String> = if self.stop == StopRequest::None
            && self.want_claim
            && !self.spool_space.claims_paused(now, self.spool.root())
        {
            self.slots.claim_for(now)
        } else {
            Vec::new()
        };
        let commit_due = self.outbox.commit_due(now, self.stop != StopRequest::None);
        let ship_due = self.ship_due(now);
        if !commit_due && !beat && claim_for.is_empty() && !self.woken && !ship_due {
            return None;
        }
        let renew: Vec<Lease> = if beat {
            self.slots.leases_held()
        } else {
            Vec::new()
        };
        let (output, shipped) = if ship_due {
            self.collect_output(now)
        } else {
            Default::default()
        };
        // Never in a burst: its end is judged on a claim that came up short.
        let claim_if_freed =
            !claim_for.is_empty() && !self.full_claim && !self.options.burst && self.duty.on_duty();
        let asked = Instant::now();
        let exchange = Exchange {
            finished: self.outbox.finished(),
            renew: &renew,
            process: Some(&self.process),
            beat,
            claim_for: &claim_for,
            reassign: self.outbox.reassigned(),
            output: &output,
            // Read-only round trips (wake-ups) ask too: a cancel wakes workers.
            check_cancels: !self.slots.all_idle(),
            lease_timeout: self.config.lease_timeout,
            queues: self.options.queues.as_deref(),
            claim_if_freed,
        };
        let writes = exchange.writes();
        let result = self.store.exchange(&exchange);
        if let Some(trips) = &self.options.round_trips
            && writes
        {
            let ms = asked.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut histogram) = trips.lock() {
                histogram.observe(ms);
            }
        }
        match result {
            Ok(reply) => {
                self.store_retry.succeeded(now);
                self.woken = false;
                if ship_due {
                    self.mark_shipped(shipped, now);
                }
                let recorded = self.outbox.committed();
                if self.options.timings {
                    let committed = Instant::now();
                    let claim = committed - now;
                    self.summary
                        .completion_latencies
                        .extend(recorded.map(|at| committed - at));
                    self.summary
                        .claim_latencies
                        .extend(reply.claimed.iter().map(|_| claim));
                } else {
                    // Empties the outbox (the drain) before `self` is borrowed again.
                    drop(recorded);
                }
                if beat {
                    self.next_beat = now + self.config.heartbeat_interval;
                    self.refresh_config();
                }
                self.summary.round_trips += 1;
                let claimed = !claim_for.is_empty() && !reply.claim_skipped;
                if claimed {
                    self.summary.claim_round_trips += 1;
                    self.summary.empty_claims += u64::from(reply.claimed.is_empty());
                }
                let claimed_all = reply.claimed.len() == claim_for.len();
                self.want_claim = claimed && claimed_all;
                if claimed {
                    self.full_claim = claimed_all;
                }
                self.apply(reply, claimed);
                claimed.then_some(claimed_all)
            }
            Err(e) => {
                self.store_retry.failed(now, &e);
                // Claims and results may have committed with the reply lost.
                self.in_doubt |= writes;
                None
            }
        }
    }

    /// Acts on the store's answer to a round trip.
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
            self.request_stop(reply.stop, StopReason::Requested);
        }
        if claimed {
            self.next_due = reply.next_due_in.map(|d| Instant::now() + d);
        }
        for lease in &reply.cancel {
            self.cancel(lease);
        }
        for (worker_id, job) in reply.claimed {
            self.dispatch(&worker_id, job);
        }
        self.rebalance();
    }

    /// Gives back the jobs of dead workers and expired leases; returns whether it
    /// gave any back (they are claimable now).
    fn recover(&mut self) -> bool {
        let settled = self
            .store_retry
            .settled(Instant::now(), self.config.lease_timeout);
        let host = self.process.host.clone();
        match recovery::recover(self.store.as_mut(), &host, &self.spool, settled) {
            Ok(recovered) if !recovered.is_empty() => {
                self.want_claim = true;
                self.full_claim = true;
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.store_retry.failed(Instant::now(), &e);
                false
            }
        }
    }

    fn burst_done(&mut self) -> bool {
        if !self.slots.all_idle() || !self.outbox.has_no_results() {
            return false;
        }
        // The claim just came up short, so no pending job is ready for this worker:
        // what is left waits for a time, for other jobs, or in a paused queue or one
        // this worker does not serve. Stay only while something still runs (it may
        // release dependents or be retried) or a failed job waits for its retry.
        match self.store.jobs_in_flight() {
            Ok(in_flight) => !in_flight,
            Err(e) => {
                self.store_retry.failed(Instant::now(), &e);
                false
            }
        }
    }

    fn refresh_config(&mut self) {
        if let Ok(settings) = self.store.settings() {
            self.config = Config::from_stored(&settings);
        }
    }
}
