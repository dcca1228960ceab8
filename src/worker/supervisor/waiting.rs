//! The supervisor's wait between rounds: it sleeps on its inbox until an event, the
//! exit of one of its shells, or the earliest of its timers (heartbeat, recovery,
//! commit delay, the next due retry, prefetch hold, output shipping, spool capping,
//! run markers, a full spool disk, recurring jobs, SIGKILL escalation, job
//! deadlines), then handles everything that arrived: ended runs first, then events.
//! While the store is down, store timers wait for the retry so an overdue timer
//! cannot spin the CPU. A timer that fires also claims, in case a wake-up was
//! missed; a PostgreSQL worker process not on duty (DECISIONS §26) does so at most
//! every [`OFF_DUTY_POLL`].

use std::time::Instant;

use super::{OFF_DUTY_POLL, Supervisor, stops};
use crate::store::StopRequest;
use crate::worker::events::Event;
use crate::worker::slot_runner::{EXIT_POLL_WITHOUT_PIDFD, ExitWatch};

impl Supervisor {
    /// Waits for the next event or timer, then handles everything that arrived.
    pub(super) fn wait(&mut self) {
        let now = Instant::now();
        // Ready for a job: a slot is free and claims are not held back (stopping, a
        // full spool disk), so a process on duty that cannot claim hands duty on.
        self.duty.set_ready(
            self.stop == StopRequest::None
                && self.slots.any_idle()
                && self.spool_space.recheck_at().is_none(),
        );
        let mut store_timers = vec![self.next_beat, self.next_recovery];
        store_timers.extend(self.next_due);
        store_timers.extend(self.outbox.commit_deadline());
        store_timers.extend(self.next_ship_at());
        store_timers.extend(self.cron_wake_at());
        store_timers.extend(self.spool_space.recheck_at());
        let mut kill_timers: Vec<Instant> = self.next_cap_at().into_iter().collect();
        kill_timers.extend(self.next_mark_at());
        for slot in self.slots.iter() {
            let Some(run) = slot.run.as_ref() else {
                continue;
            };
            kill_timers.extend(run.kill_at);
            kill_timers.extend(stops::deadline_due(run));
            store_timers.extend(slot.prefetch_deadline());
        }
        let mut deadline = now + self.poll;
        for at in store_timers {
            deadline = deadline.min(self.store_retry.when_possible(at));
        }
        for at in kill_timers.into_iter().chain(self.store_retry.retry_at()) {
            deadline = deadline.min(at);
        }
        // Slots whose shell runs: their pidfds join the sleep; a shell without one
        // (an old kernel) is looked for on a short timer.
        let mut watched = Vec::new();
        let mut exit_fds = Vec::new();
        let mut unwatched = Vec::new();
        for (index, runner) in self.runners.iter().enumerate() {
            match runner.exit_watch() {
                Some(ExitWatch::Fd(fd)) => {
                    watched.push(index);
                    exit_fds.push(fd);
                }
                Some(ExitWatch::Poll) => unwatched.push(index),
                None => {}
            }
        }
        if !unwatched.is_empty() {
            deadline = deadline.min(now + EXIT_POLL_WITHOUT_PIDFD);
        }
        if !self.ended_at_once.is_empty() {
            deadline = now;
        }
        let mut ended: Vec<usize> = self
            .inbox
            .sleep(&exit_fds, deadline.saturating_duration_since(now))
            .into_iter()
            .filter_map(|position| watched.get(position).copied())
            .collect();
        ended.extend(
            unwatched
                .into_iter()
                .filter(|&index| self.runners[index].has_exited()),
        );
        let events: Vec<Event> = std::iter::from_fn(|| self.inbox.try_recv()).collect();
        let at_once = std::mem::take(&mut self.ended_at_once);
        if ended.is_empty() && events.is_empty() && at_once.is_empty() {
            // A timer fired: a retry may be due, or a wake-up was missed. Off duty,
            // one-job wake-ups go to another process, so a missed one is looked
            // for less often (DECISIONS §26); not in a burst, which claims again
            // on its timers to see whether it may end.
            let now = Instant::now();
            if self.next_due.is_some_and(|at| now >= at) {
                self.next_due = None;
                self.want_claim = true;
                self.full_claim = true;
            }
            if !self.duty.supported()
                || self.duty.on_duty()
                || self.options.burst
                || now >= self.next_timer_claim
            {
                self.want_claim = true;
                self.full_claim = true;
                self.next_timer_claim = now + OFF_DUTY_POLL;
            }
        }
        for (index, execution) in at_once {
            self.finish(index, execution);
        }
        for index in ended {
            if let Some(execution) = self.runners[index].finish() {
                self.finish(index, execution);
            }
        }
        for event in events {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Wake => {
                // Our own commits wake us too. While every slot is busy those wake-ups
                // are skipped unless another connection committed. With a slot free
                // every wake-up is taken: the event can arrive while another
                // process's commit is still in flight, before it is visible.
                // Even one not acted on: the next claim, when a slot frees, must
                // look at everything (`full_claim`).
                self.full_claim = true;
                let slot_free = self.slots.any_idle();
                if slot_free || self.store.changed_elsewhere() {
                    self.woken = true;
                    self.want_claim = true;
                }
            }
            Event::Signal(signal) => self.on_signal(signal),
        }
    }
}
