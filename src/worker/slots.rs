//! What each slot of a worker process is doing, and the claim-ahead policy that
//! decides how many jobs each slot asks the store for.
//!
//! A slot runs one job at a time and may hold a few more claimed ahead (`queued`), so
//! short jobs follow each other without waiting for a store round trip. The policy
//! keeps three promises:
//! - A slot whose current job has run for [`PREFETCH_HOLD`] claims nothing more, and
//!   what it claimed ahead is given back ([`Slot::holds_stale_prefetch`]): a job never
//!   waits behind a long one for more than that.
//! - No slot of this process sits idle while another one holds a job claimed ahead
//!   ([`Slots::rebalance`]).
//! - Idle slots come first in a claim ([`Slots::claim_for`]), because the store hands
//!   jobs out in that order.
//!
//! This module only decides and keeps the books; the supervisor talks to the store
//! and starts the jobs' shells (`slot_runner`). Everything here takes the current time as an
//! argument, so it is tested without a clock, a store or a process.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::job::AttemptOutcome;
use crate::job::{Job, after_release};
use crate::store::{AttemptFacts, Finished, Lease};
use crate::worker::attempt_output::{FIRST_SHIP, Progress};
use crate::worker::stopping::{Deadline, Ending};

/// A worker claims its next job while the current one runs, so short jobs follow
/// each other without waiting for a store round trip. If the current job is still
/// running after this long, the claimed-ahead jobs are given back so an idle worker
/// elsewhere can take them: a job never waits behind a long one for more than this.
pub const PREFETCH_HOLD: Duration = Duration::from_millis(50);
/// How many jobs a slot claims ahead when its jobs are short: one round trip then
/// serves several jobs (batched claims and group commit).
pub const PREFETCH_DEPTH: usize = 4;
/// Jobs that take less than this are short.
pub const SHORT_JOB: Duration = Duration::from_millis(20);

/// The job a slot is running.
pub struct Run {
    pub job: Job,
    pub started: Instant,
    /// Killed on purpose (forced stop): goes back to pending for free.
    pub forced: bool,
    /// The lease was lost: another worker owns the job, drop the result.
    pub lost: bool,
    /// When a job sent SIGTERM gets SIGKILL.
    pub kill_at: Option<Instant>,
    /// When the job's time is up, if it has a timeout.
    pub deadline: Option<Deadline>,
    /// Why the supervisor is stopping the run, if it is.
    pub ending: Option<Ending>,
    /// How much of its output has been shipped to the store and punched out of the
    /// spool while it runs.
    pub output: Progress,
    /// The run's output goes with the first round trip at or after this.
    pub ship_at: Instant,
}

/// One slot's books: its running job and the jobs claimed ahead for it.
pub struct Slot {
    pub worker_id: String,
    pub run: Option<Run>,
    /// Claimed ahead, started in order as `run` ends (see [`PREFETCH_HOLD`]).
    pub queued: VecDeque<Job>,
    /// How long the last job took: short jobs get a deeper queue.
    pub last_took: Option<Duration>,
}

impl Slot {
    pub fn new(worker_id: String) -> Slot {
        Slot {
            worker_id,
            run: None,
            queued: VecDeque::new(),
            last_took: None,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.run.is_none() && self.queued.is_empty()
    }

    /// How many jobs a claim fills the slot's queue up to (a free slot starts the
    /// first of them at once): one, or [`PREFETCH_DEPTH`] while its jobs are short.
    fn depth(&self) -> usize {
        if self.last_took.is_some_and(|took| took < SHORT_JOB) {
            PREFETCH_DEPTH
        } else {
            1
        }
    }

    /// How many jobs to claim for this slot now: none while it holds enough, else
    /// enough to fill its queue. A slot whose job has run long claims nothing.
    pub fn wanted(&self, now: Instant) -> usize {
        if let Some(run) = &self.run
            && (run.forced
                || run.lost
                || run.ending.is_some()
                || now.duration_since(run.started) >= PREFETCH_HOLD)
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

    /// Whether the slot holds jobs claimed ahead behind one that has run too long:
    /// they must be given back.
    pub fn holds_stale_prefetch(&self, now: Instant) -> bool {
        let long = self
            .run
            .as_ref()
            .is_some_and(|r| now.duration_since(r.started) >= PREFETCH_HOLD);
        long && !self.queued.is_empty()
    }

    /// When the jobs claimed ahead for this slot go stale, if it holds any.
    pub fn prefetch_deadline(&self) -> Option<Instant> {
        let run = self.run.as_ref()?;
        (!self.queued.is_empty()).then_some(run.started + PREFETCH_HOLD)
    }

    /// Gives back the jobs claimed ahead: they go back to `pending` as if never
    /// claimed. Yields the results to record.
    pub fn release_queued(&mut self) -> impl Iterator<Item = Finished> + '_ {
        let worker_id = &self.worker_id;
        self.queued.drain(..).map(|job| Finished {
            lease: lease_of(&job),
            worker_id: Some(worker_id.clone()),
            outcome: AttemptOutcome::Released,
            transition: after_release(&job),
            output_tail: None,
            output: None,
            facts: AttemptFacts::default(),
            only_if_expired: false,
        })
    }

    /// Records that `job` started running in this slot.
    pub fn begin(&mut self, job: Job, now: Instant) {
        self.run = Some(Run {
            job,
            started: now,
            forced: false,
            lost: false,
            kill_at: None,
            deadline: None,
            ending: None,
            output: Progress::default(),
            ship_at: now + FIRST_SHIP,
        });
    }

    /// Records that the running job ended; returns it.
    pub fn end(&mut self, now: Instant) -> Option<Run> {
        let run = self.run.take()?;
        self.last_took = Some(now.duration_since(run.started));
        Some(run)
    }
}

/// All slots of a worker process, in worker order (the index is the slot number,
/// the same as that of the slot's runner).
pub struct Slots(Vec<Slot>);

impl Slots {
    pub fn new(worker_ids: impl IntoIterator<Item = String>) -> Slots {
        Slots(worker_ids.into_iter().map(Slot::new).collect())
    }

    pub fn all_idle(&self) -> bool {
        self.iter().all(Slot::is_idle)
    }

    pub fn any_idle(&self) -> bool {
        self.iter().any(Slot::is_idle)
    }

    /// The claim to send: one worker id per wanted job, idle slots first.
    pub fn claim_for(&self, now: Instant) -> Vec<String> {
        let idle = self.iter().filter(|s| s.is_idle());
        let busy = self.iter().filter(|s| !s.is_idle());
        idle.chain(busy)
            .flat_map(|s| std::iter::repeat_n(s.worker_id.clone(), s.wanted(now)))
            .collect()
    }

    /// The leases to renew with a heartbeat: every job held, running or queued,
    /// except runs whose lease is already lost.
    pub fn leases_held(&self) -> Vec<Lease> {
        let running = self.iter().filter_map(|s| s.run.as_ref());
        let queued = self.iter().flat_map(|s| s.queued.iter());
        running
            .filter(|r| !r.lost)
            .map(|r| lease_of(&r.job))
            .chain(queued.map(lease_of))
            .collect()
    }

    /// Takes a job claimed for `worker_id`: queues it if that slot is running a job,
    /// else returns it with the slot's index, to be started now. A job for a worker
    /// this process does not have is dropped.
    pub fn accept(&mut self, worker_id: &str, job: Job) -> Option<(usize, Job)> {
        let index = self.iter().position(|s| s.worker_id == worker_id)?;
        let slot = &mut self.0[index];
        if slot.run.is_some() {
            slot.queued.push_back(job);
            return None;
        }
        Some((index, job))
    }

    /// Idle slots take jobs claimed ahead by busy ones (the last one queued, from
    /// the slot that holds most), so no job waits behind another while a slot has
    /// nothing to do. Each moved job is started in its new slot (with its
    /// `worker_id` changed) and returned with that slot's index; the store has to be
    /// told of the move.
    pub fn rebalance(&mut self, now: Instant) -> Vec<(usize, Job)> {
        let mut moved = Vec::new();
        loop {
            let Some(idle) = self.iter().position(Slot::is_idle) else {
                return moved;
            };
            let donor = (0..self.len())
                .filter(|&i| !self[i].queued.is_empty())
                .max_by_key(|&i| self[i].queued.len());
            let Some(mut job) = donor.and_then(|d| self.0[d].queued.pop_back()) else {
                return moved;
            };
            job.worker_id = Some(self[idle].worker_id.clone());
            self.0[idle].begin(job.clone(), now);
            moved.push((idle, job));
        }
    }
}

impl Deref for Slots {
    type Target = [Slot];

    fn deref(&self) -> &[Slot] {
        &self.0
    }
}

impl DerefMut for Slots {
    fn deref_mut(&mut self) -> &mut [Slot] {
        &mut self.0
    }
}

/// The lease a claimed job carries.
pub fn lease_of(job: &Job) -> Lease {
    Lease {
        job_id: job.id.clone(),
        token: job.lease_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobState, NewJob};

    fn job(id: &str) -> Job {
        let new = NewJob::new(id.into(), "true".into(), "/".into());
        Job {
            state: JobState::Processing,
            lease_token: 7,
            ..Job::pending(new, 0, 0)
        }
    }

    fn slots(n: usize) -> Slots {
        Slots::new((1..=n).map(|i| format!("w-{i}")))
    }

    /// A slot whose last job was short, so it claims ahead.
    fn after_short_job(slot: &mut Slot) {
        slot.last_took = Some(SHORT_JOB / 2);
    }

    #[test]
    fn a_new_idle_slot_asks_for_one_job() {
        let slot = Slot::new("w-1".into());
        assert_eq!(slot.wanted(Instant::now()), 1);
    }

    #[test]
    fn an_idle_slot_after_a_short_job_asks_for_one_job_plus_the_claim_ahead() {
        let mut slot = Slot::new("w-1".into());
        after_short_job(&mut slot);
        assert_eq!(slot.wanted(Instant::now()), PREFETCH_DEPTH);
    }

    #[test]
    fn a_slot_after_a_long_job_claims_only_one_job_ahead() {
        let now = Instant::now();
        let mut slot = Slot::new("w-1".into());
        slot.last_took = Some(SHORT_JOB);
        assert_eq!(slot.wanted(now), 1);
        slot.begin(job("a"), now);
        assert_eq!(slot.wanted(now), 1, "the next one, claimed ahead");
        slot.queued.push_back(job("b"));
        assert_eq!(slot.wanted(now), 0);
    }

    #[test]
    fn a_busy_slot_refills_its_queue_only_below_half_depth() {
        let now = Instant::now();
        let mut slot = Slot::new("w-1".into());
        after_short_job(&mut slot);
        slot.begin(job("a"), now);
        slot.queued.extend([job("b"), job("c")]);
        assert_eq!(slot.wanted(now), 0, "half full is full enough");
        slot.queued.pop_back();
        assert_eq!(slot.wanted(now), PREFETCH_DEPTH - 1);
    }

    #[test]
    fn a_slot_whose_job_runs_long_or_is_being_killed_claims_nothing() {
        let start = Instant::now();
        let mut slot = Slot::new("w-1".into());
        after_short_job(&mut slot);
        slot.begin(job("a"), start);
        assert!(slot.wanted(start) > 0);
        assert_eq!(slot.wanted(start + PREFETCH_HOLD), 0);
        let marks: [fn(&mut Run); 3] = [
            |r| r.forced = true,
            |r| r.lost = true,
            |r| r.ending = Some(Ending::Cancelled),
        ];
        for mark in marks {
            slot.begin(job("a"), start);
            mark(slot.run.as_mut().expect("running"));
            assert_eq!(slot.wanted(start), 0);
        }
    }

    #[test]
    fn a_prefetched_job_behind_one_running_longer_than_the_hold_is_stale() {
        let start = Instant::now();
        let mut slot = Slot::new("w-1".into());
        slot.begin(job("a"), start);
        assert!(
            !slot.holds_stale_prefetch(start + PREFETCH_HOLD),
            "nothing queued"
        );
        assert_eq!(slot.prefetch_deadline(), None);
        slot.queued.push_back(job("b"));
        assert_eq!(slot.prefetch_deadline(), Some(start + PREFETCH_HOLD));
        assert!(!slot.holds_stale_prefetch(start + PREFETCH_HOLD / 2));
        assert!(slot.holds_stale_prefetch(start + PREFETCH_HOLD));
    }

    #[test]
    fn a_released_prefetch_goes_back_to_pending_as_if_never_claimed() {
        let mut slot = Slot::new("w-1".into());
        slot.begin(job("a"), Instant::now());
        slot.queued.extend([job("b"), job("c")]);
        let released: Vec<Finished> = slot.release_queued().collect();
        assert!(slot.queued.is_empty());
        assert!(slot.run.is_some(), "the running job stays");
        let ids: Vec<&str> = released.iter().map(|f| f.lease.job_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        for finished in &released {
            assert_eq!(finished.outcome, AttemptOutcome::Released);
            assert_eq!(finished.transition.state, JobState::Pending);
            assert_eq!(finished.transition.attempts, 0);
            assert_eq!(finished.worker_id.as_deref(), Some("w-1"));
        }
    }

    #[test]
    fn ending_a_run_remembers_how_long_it_took() {
        let start = Instant::now();
        let mut slot = Slot::new("w-1".into());
        assert!(slot.end(start).is_none());
        slot.begin(job("a"), start);
        let run = slot
            .end(start + Duration::from_millis(3))
            .expect("was running");
        assert_eq!(run.job.id, "a");
        assert_eq!(slot.last_took, Some(Duration::from_millis(3)));
        assert!(slot.is_idle());
    }

    #[test]
    fn a_claim_asks_for_idle_slots_first() {
        let now = Instant::now();
        let mut slots = slots(3);
        for slot in slots.iter_mut() {
            after_short_job(slot);
        }
        slots[0].begin(job("a"), now);
        slots[0].queued.push_back(job("b"));
        let claim = slots.claim_for(now);
        let mut expected = vec!["w-2".to_owned(); PREFETCH_DEPTH];
        expected.extend(vec!["w-3".to_owned(); PREFETCH_DEPTH]);
        expected.extend(vec!["w-1".to_owned(); PREFETCH_DEPTH - 1]);
        assert_eq!(claim, expected);
    }

    #[test]
    fn a_claimed_job_starts_in_a_free_slot_and_queues_behind_a_running_one() {
        let now = Instant::now();
        let mut slots = slots(2);
        let (index, started) = slots.accept("w-2", job("a")).expect("slot free");
        assert_eq!((index, started.id.as_str()), (1, "a"));
        slots[1].begin(started, now);
        assert!(slots.accept("w-2", job("b")).is_none());
        assert_eq!(slots[1].queued.len(), 1);
        assert!(slots.accept("w-9", job("c")).is_none(), "unknown worker");
        assert!(slots[0].is_idle());
    }

    #[test]
    fn rebalance_moves_a_queued_job_to_an_idle_slot() {
        let now = Instant::now();
        let mut slots = slots(3);
        slots[0].begin(job("a"), now);
        slots[0].queued.extend([job("b"), job("c")]);
        slots[1].begin(job("d"), now);
        slots[1].queued.extend([job("e")]);
        let moved = slots.rebalance(now);
        assert_eq!(moved.len(), 1, "one idle slot");
        let (index, moved_job) = &moved[0];
        assert_eq!(*index, 2);
        assert_eq!(moved_job.id, "c", "the last job of the fullest queue");
        assert_eq!(moved_job.worker_id.as_deref(), Some("w-3"));
        let run = slots[2].run.as_ref().expect("started in the idle slot");
        assert_eq!(run.job.id, "c");
        assert_eq!(slots[0].queued.len(), 1);
        assert_eq!(slots[1].queued.len(), 1);
    }

    #[test]
    fn rebalance_without_an_idle_slot_or_a_queued_job_moves_nothing() {
        let now = Instant::now();
        let mut slots = slots(2);
        assert!(slots.rebalance(now).is_empty(), "nothing queued");
        slots[0].begin(job("a"), now);
        slots[0].queued.push_back(job("b"));
        slots[1].begin(job("c"), now);
        assert!(slots.rebalance(now).is_empty(), "no idle slot");
        assert_eq!(slots[0].queued.len(), 1);
    }

    #[test]
    fn a_heartbeat_renews_every_held_job_but_lost_ones() {
        let now = Instant::now();
        let mut slots = slots(2);
        slots[0].begin(job("a"), now);
        slots[0].queued.push_back(job("b"));
        slots[1].begin(job("c"), now);
        slots[1].run.as_mut().expect("running").lost = true;
        let ids: Vec<String> = slots.leases_held().into_iter().map(|l| l.job_id).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
