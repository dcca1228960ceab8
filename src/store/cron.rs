//! What both stores share for recurring jobs (`queuectl cron`): the entry rows, what
//! firing the due entries did, and the decision each due entry gets (`plan`), so
//! the backends only read and write.
//!
//! Invariants of firing, kept by both backends in one transaction:
//! - an entry is fired only if it is not paused and its `next_run_at` (the tick) is
//!   at or before the store's clock;
//! - its `next_run_at` moves to the first tick strictly after the store's clock,
//!   guarded by `next_run_at = <the tick read>`, so of two workers firing at once
//!   exactly one moves it and only that one enqueues the run;
//! - after downtime an entry is behind by any number of ticks and gets ONE run (for
//!   the oldest missed tick), then continues from the next tick after now;
//! - the run is enqueued through the store's own enqueue, in the same transaction,
//!   with the unique key `NAME@TICK`: even a second writer that got past the guard
//!   could not create the run while it is unfinished.

use std::time::Duration;

use crate::cron::{self, CronSchedule};
use crate::error::InputError;
use crate::job::NewJob;

/// How long an entry the store cannot use (a schedule or job this queuectl cannot
/// read: written by hand or by a newer release) waits before it is tried again.
pub const BROKEN_RETRY_MS: i64 = 3_600_000;

/// A recurring job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEntry {
    pub name: String,
    /// The cron expression (fields separated by single spaces).
    pub schedule: String,
    /// The IANA time zone the expression is read in.
    pub tz: String,
    /// The job JSON every run is enqueued from.
    pub job: String,
    pub paused: bool,
    /// The next tick to enqueue, Unix ms (stale while paused: `resume` recomputes it).
    pub next_run_at: i64,
    /// The tick of the latest run enqueued.
    pub last_run_at: Option<i64>,
    pub created_at: i64,
}

/// An entry to add: its first tick is the first after the store's clock.
#[derive(Debug, Clone)]
pub struct NewCronEntry {
    pub name: String,
    pub schedule: CronSchedule,
    /// Job JSON, checked by [`cron::CronJob::to_json`].
    pub job: String,
}

/// One run enqueued by [`crate::store::Store::cron_fire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronRun {
    pub name: String,
    /// The tick the run stands for, Unix ms.
    pub tick: i64,
    /// The job created, or the unfinished job that already held the run's key.
    pub job_id: String,
    pub existing: bool,
}

/// What one [`crate::store::Store::cron_fire`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CronFired {
    pub runs: Vec<CronRun>,
    /// Entries skipped because the store holds something this queuectl cannot use,
    /// with why; each is tried again [`BROKEN_RETRY_MS`] later.
    pub broken: Vec<(String, String)>,
    /// How long until the earliest entry that is not paused is due, by the store's
    /// clock (zero if one is due now); `None` without such an entry.
    pub next_due_in: Option<Duration>,
}

/// An entry found due, as read in the firing transaction.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub name: String,
    pub schedule: String,
    pub tz: String,
    pub job: String,
    /// The tick that is due (its `next_run_at` as read): the guard of the update.
    pub tick: i64,
}

/// What to do with a due entry.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Move `next_run_at` to `next`, record the tick as the last run and enqueue
    /// `job`.
    Run { next: i64, job: Box<NewJob> },
    /// The store holds something this queuectl cannot use: move `next_run_at` to
    /// `retry_at` and enqueue nothing.
    Broken { retry_at: i64, why: String },
}

/// Decides what firing `due` at `now` (the store's clock) means.
pub(crate) fn plan(due: &Due, now: i64) -> Plan {
    let decided = CronSchedule::from_stored(&due.schedule, &due.tz)
        .and_then(|schedule| schedule.next_after(now))
        .and_then(|next| Ok((next, cron::run_job(&due.name, due.tick, &due.job)?)))
        .and_then(|(next, job)| match job.after.is_empty() {
            // `cron add` never stores one; a run must not wait on jobs it cannot name.
            true => Ok((next, job)),
            false => Err(InputError::Invalid(
                "the stored job runs after other jobs, which a recurring job cannot".into(),
            )),
        });
    match decided {
        Ok((next, job)) => Plan::Run {
            next,
            job: Box::new(job),
        },
        Err(e) => Plan::Broken {
            retry_at: now.saturating_add(BROKEN_RETRY_MS),
            why: e.to_string(),
        },
    }
}

/// When resuming entry `schedule`/`tz` at `now`: its next tick (ticks missed while
/// paused are skipped), or `None` if the stored entry cannot be read (it then keeps
/// its `next_run_at`).
pub(crate) fn next_on_resume(schedule: &str, tz: &str, now: i64) -> Option<i64> {
    CronSchedule::from_stored(schedule, tz)
        .and_then(|s| s.next_after(now))
        .ok()
}

/// The wait from `now` until `earliest` (the smallest `next_run_at` of the entries
/// that are not paused).
pub(crate) fn due_in(earliest: Option<i64>, now: i64) -> Option<Duration> {
    earliest.map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(schedule: &str, job: &str) -> Due {
        Due {
            name: "e".into(),
            schedule: schedule.into(),
            tz: "UTC".into(),
            job: job.into(),
            tick: 60_000,
        }
    }

    #[test]
    fn a_due_entry_runs_once_for_its_tick_and_moves_past_now() {
        // Down for an hour: one run for the oldest missed tick, then the next
        // minute after now.
        let now = 3_600_000 + 1_234;
        let Plan::Run { next, job } = plan(&due("* * * * *", r#"{"command":"x","cwd":"/"}"#), now)
        else {
            panic!("not a run");
        };
        assert_eq!(next, 3_660_000);
        assert_eq!(job.unique_key.as_deref(), Some("e@1970-01-01T00:01:00Z"));
    }

    #[test]
    fn an_unreadable_entry_waits_instead_of_spinning() {
        for broken in [
            due("* * * *", r#"{"command":"x"}"#),
            due("@daily", "{"),
            due("@daily", r#"{"command":"x","after":["a"]}"#),
        ] {
            let Plan::Broken { retry_at, .. } = plan(&broken, 1000) else {
                panic!("not broken");
            };
            assert_eq!(retry_at, 1000 + BROKEN_RETRY_MS);
        }
    }

    #[test]
    fn the_wait_until_due_is_never_negative() {
        assert_eq!(due_in(None, 5), None);
        assert_eq!(due_in(Some(3), 5), Some(Duration::ZERO));
        assert_eq!(due_in(Some(1505), 5), Some(Duration::from_millis(1500)));
        assert_eq!(due_in(Some(i64::MIN), 5), Some(Duration::ZERO));
        assert!(due_in(Some(i64::MAX), -5).is_some());
    }
}
