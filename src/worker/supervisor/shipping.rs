//! The supervisor shipping the output of long runs to the store while they run,
//! and capping their working files in the spool.
//!
//! A run ships first [`FIRST_SHIP`](crate::worker::attempt_output::FIRST_SHIP) after it started, then at most once a second,
//! on the ticks of one grid shared by all slots ([`SHIP_EVERY`] apart), so a busy
//! process makes one round trip a second for all its long runs. When it ships, a
//! run gets the omitted middle of its working file punched out once past its
//! limit, and ships what it printed since the last shipped offset, up to
//! [`MAX_CHUNK`], as [`OutputChunk`]s in that round trip. The shipped offset only
//! advances once the round trip has committed, so a failed one is shipped again.
//! Between shipments the working files are capped every [`CAP_EVERY`]
//! ([`Supervisor::cap_spool`]), so a fast printer cannot fill the spool's disk.
//! Runs that end within [`FIRST_SHIP`](crate::worker::attempt_output::FIRST_SHIP) ship nothing, and cost nothing here.

use std::fs::File;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::log;
use crate::store::{Lease, OutputChunk};
use crate::worker::attempt_output::{
    MAX_CHUNK, SHIP_EVERY, next_piece, punch, punch_range, read_at, trim_marks,
};
use crate::worker::slot_runner::SlotRunner;
use crate::worker::slots::{Run, lease_of};

/// Runs whose output went out in a round trip, and where it now ends.
pub(super) type Shipped = Vec<(Lease, u64)>;

/// How often the working files of running attempts are capped ([`Supervisor::cap_spool`]).
pub(super) const CAP_EVERY: Duration = Duration::from_millis(100);

/// Punches the omitted middle out of `run`'s working `file` of `size` bytes, once
/// past its limit (never what is shipped or kept: see `attempt_output`).
fn punch_middle(file: &File, run: &mut Run, size: u64) {
    let progress = &mut run.output;
    let Some(range) = punch_range(progress.punched, size, progress.limit) else {
        return;
    };
    match punch(file, &range) {
        Ok(()) => progress.punched = range.end,
        Err(e) => {
            log::warn(&format!(
                "job {}: cannot free the spool space of omitted output ({e}); \
                 its spool file keeps growing",
                run.job.id
            ));
            progress.punched = u64::MAX;
        }
    }
}

/// Whether `run` ships its output in a round trip at `now`.
fn ships(run: &Run, now: Instant) -> bool {
    !run.lost && now >= run.ship_at
}

/// The first tick of the grid that starts at `grid` at or after `at`.
fn next_tick(grid: Instant, at: Instant) -> Instant {
    let since = at.saturating_duration_since(grid);
    let every = SHIP_EVERY.as_nanos();
    let ticks = since.as_nanos().div_ceil(every);
    grid + SHIP_EVERY * u32::try_from(ticks).unwrap_or(u32::MAX)
}

impl Supervisor {
    /// Whether this round trip should carry the output of long runs.
    pub(super) fn ship_due(&self, now: Instant) -> bool {
        self.slots
            .iter()
            .flat_map(|s| &s.run)
            .any(|r| ships(r, now))
    }

    /// When the next run is due to ship, if any runs.
    pub(super) fn next_ship_at(&self) -> Option<Instant> {
        let runs = self.slots.iter().flat_map(|s| &s.run).filter(|r| !r.lost);
        runs.map(|r| r.ship_at).min()
    }

    /// Punches and reads the output of every long run: the chunks to send, and
    /// where each run's shipped output will end once they are committed.
    pub(super) fn collect_output(&mut self, now: Instant) -> (Vec<OutputChunk>, Shipped) {
        let mut chunks = Vec::new();
        let mut shipped = Vec::new();
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            let Some(run) = slot.run.as_mut().filter(|r| ships(r, now)) else {
                continue;
            };
            let file = runner.output();
            let Ok(size) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            punch_middle(file, run, size);
            let progress = &mut run.output;
            let limit = progress.limit;
            let lease = lease_of(&run.job);
            let mut end = progress.shipped;
            let mut budget = MAX_CHUNK;
            while let Some(range) = next_piece(end, size, limit, budget) {
                let data = match read_at(file, range.start, range.end - range.start) {
                    Ok(data) if !data.is_empty() => data,
                    _ => break,
                };
                end = range.start + data.len() as u64;
                budget -= data.len() as u64;
                let (keep_head, drop_before) = trim_marks(end, limit);
                chunks.push(OutputChunk {
                    lease: lease.clone(),
                    offset: range.start,
                    data,
                    keep_head,
                    drop_before,
                });
            }
            if end != progress.shipped {
                shipped.push((lease, end));
            }
        }
        (chunks, shipped)
    }

    /// Caps the working files of running attempts: every [`CAP_EVERY`], the
    /// omitted middle of each file past its limit is punched out, whether or not
    /// the run ships now, so a run that prints fast holds at most about its
    /// `output-limit` plus what it prints in [`CAP_EVERY`] of spool space.
    pub(super) fn cap_spool(&mut self, now: Instant) {
        if now < self.next_cap {
            return;
        }
        self.next_cap = now + CAP_EVERY;
        for (slot, runner) in self.slots.iter_mut().zip(&self.runners) {
            let Some(run) = slot.run.as_mut().filter(|r| !r.lost) else {
                continue;
            };
            let file = runner.output();
            if let Ok(size) = file.metadata().map(|m| m.len()) {
                punch_middle(file, run, size);
            }
        }
    }

    /// Writes the run marker of every attempt that has run for
    /// [`crate::worker::exec::MARK_AFTER`].
    pub(super) fn mark_runs(&mut self, now: Instant) {
        for runner in &mut self.runners {
            runner.mark_if_due(now);
        }
    }

    /// When the next run marker is due, if one is.
    pub(super) fn next_mark_at(&self) -> Option<Instant> {
        self.runners.iter().filter_map(SlotRunner::mark_at).min()
    }

    /// When the spool is capped next, if anything runs.
    pub(super) fn next_cap_at(&self) -> Option<Instant> {
        let running = self.slots.iter().flat_map(|s| &s.run).any(|r| !r.lost);
        running.then_some(self.next_cap)
    }

    /// The round trip that carried `shipped` committed at `now`.
    pub(super) fn mark_shipped(&mut self, shipped: Shipped, now: Instant) {
        let again = next_tick(self.ship_grid, now + SHIP_EVERY);
        for run in self.slots.iter_mut().flat_map(|s| s.run.as_mut()) {
            if ships(run, now) {
                run.ship_at = again;
            }
        }
        for (lease, end) in shipped {
            let mut runs = self.slots.iter_mut().flat_map(|s| s.run.as_mut());
            if let Some(run) = runs.find(|r| lease_of(&r.job) == lease) {
                run.output.shipped = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_is_on_the_grid_at_or_after() {
        let grid = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_tick(grid, grid), grid);
        assert_eq!(next_tick(grid, grid + ms(1)), grid + SHIP_EVERY);
        assert_eq!(next_tick(grid, grid + SHIP_EVERY), grid + SHIP_EVERY);
        assert_eq!(next_tick(grid, grid + ms(2_300)), grid + SHIP_EVERY * 3);
        // An instant before the grid started rounds up to its start.
        assert_eq!(next_tick(grid + ms(5), grid), grid + ms(5));
    }
}
