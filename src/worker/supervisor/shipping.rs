//! The supervisor shipping the output of long runs to the store while they run,
//! and capping their working files in the spool.
//!
//! Once a second at most (the [`SHIP_EVERY`] tick, shared by all slots so a busy
//! process makes one round trip for all its runs), each run that has been going
//! for a second or more: gets the omitted middle of its working file punched out
//! once past its limit, and ships what it printed since the last shipped offset,
//! up to [`MAX_CHUNK`], as [`OutputChunk`]s in that round trip. The shipped offset
//! only advances once the round trip has committed, so a failed one is shipped
//! again. Runs that end within a second ship nothing, and cost nothing here.

use std::time::Instant;

use super::Supervisor;
use crate::log;
use crate::store::{Lease, OutputChunk};
use crate::worker::attempt_output::{
    MAX_CHUNK, SHIP_EVERY, next_piece, punch, punch_range, read_at, trim_marks,
};
use crate::worker::slots::{Run, lease_of};

/// Runs whose output went out in a round trip, and where it now ends.
pub(super) type Shipped = Vec<(Lease, u64)>;

/// Whether `run` is long enough at `now` to ship its output.
fn ships(run: &Run, now: Instant) -> bool {
    !run.lost && now.duration_since(run.started) >= SHIP_EVERY
}

impl Supervisor {
    /// Whether this round trip should carry the output of long runs.
    pub(super) fn ship_due(&self, now: Instant) -> bool {
        now >= self.next_ship
            && self
                .slots
                .iter()
                .flat_map(|s| &s.run)
                .any(|r| ships(r, now))
    }

    /// When the next ship tick is due, if any run may be long by then.
    pub(super) fn next_ship_at(&self) -> Option<Instant> {
        let runs = self.slots.iter().flat_map(|s| &s.run).filter(|r| !r.lost);
        let first_long = runs.map(|r| r.started + SHIP_EVERY).min()?;
        Some(first_long.max(self.next_ship))
    }

    /// Punches and reads the output of every long run: the chunks to send, and
    /// where each run's shipped output will end once they are committed.
    pub(super) fn collect_output(&mut self, now: Instant) -> (Vec<OutputChunk>, Shipped) {
        let mut chunks = Vec::new();
        let mut shipped = Vec::new();
        for (slot, thread) in self.slots.iter_mut().zip(&self.threads) {
            let Some(run) = slot.run.as_mut().filter(|r| ships(r, now)) else {
                continue;
            };
            let file = thread.output();
            let Ok(size) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            let progress = &mut run.output;
            let limit = progress.limit;
            if let Some(range) = punch_range(progress.punched, size, limit) {
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

    /// The round trip that carried `shipped` committed at `now`.
    pub(super) fn mark_shipped(&mut self, shipped: Shipped, now: Instant) {
        self.next_ship = now + SHIP_EVERY;
        for (lease, end) in shipped {
            let mut runs = self.slots.iter_mut().flat_map(|s| s.run.as_mut());
            if let Some(run) = runs.find(|r| lease_of(&r.job) == lease) {
                run.output.shipped = end;
            }
        }
    }
}
