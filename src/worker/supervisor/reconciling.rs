//! The supervisor after a round trip whose outcome it never learned (see
//! `worker::reconcile`): before the next round trip it asks the store what it
//! holds, gives back the claims it never received and drops the results that did
//! commit.

use std::collections::HashSet;
use std::time::Instant;

use super::Supervisor;
use crate::log;
use crate::store::Lease;
use crate::worker::reconcile;
use crate::worker::slots::lease_of;

impl Supervisor {
    /// Squares the books with the store after a round trip whose outcome is
    /// unknown (see [`reconcile`]): gives back claims never received, drops results
    /// that did commit. Returns whether the store answered.
    pub(super) fn reconcile(&mut self, now: Instant) -> bool {
        let workers: Vec<String> = self.slots.iter().map(|s| s.worker_id.clone()).collect();
        let sent: Vec<Lease> = self
            .outbox
            .finished()
            .iter()
            .map(|f| f.lease.clone())
            .collect();
        let check = match self.store.reconcile(&workers, &sent) {
            Ok(check) => check,
            Err(e) => {
                self.store_retry.failed(now, &e);
                return false;
            }
        };
        self.in_doubt = false;
        let held: HashSet<Lease> = self
            .slots
            .iter()
            .flat_map(|s| s.run.iter().map(|r| &r.job).chain(s.queued.iter()))
            .map(lease_of)
            .collect();
        let verdict = reconcile::judge(check, &held, self.outbox.finished());
        for lease in &verdict.confirmed {
            log::info(&format!(
                "job {}: result was recorded before the store's reply was lost",
                lease.job_id
            ));
        }
        self.outbox.confirm(&verdict.confirmed);
        for release in verdict.release {
            log::info(&format!(
                "job {}: claimed by a round trip whose reply was lost; giving it back",
                release.lease.job_id
            ));
            self.outbox.record(release, now);
            self.woken = true;
        }
        true
    }
}
