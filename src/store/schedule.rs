//! What both stores share for scheduling (issue 11): the queue rows `queue list`
//! shows, the queue settings users change, and how a job's end reaches the jobs that
//! run after it (`settle_dependents`).
//!
//! Invariants: a job waits (`blocked_by` > 0) exactly while some job it runs after
//! has not completed; completing a job releases each waiting dependent once; a job
//! ending `dead` or `cancelled` cancels every waiting job that runs after it, down
//! the chain, each with a `last_error` naming the job it ran after and the job that
//! started the chain. The decisions come from [`crate::job`]; a store only reads and
//! writes through `Dependents`.

use crate::job::{self, Job, JobState, Transition};
use crate::store::{Counts, Result};

/// One queue as `queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueRow {
    pub name: String,
    /// Jobs of the queue by state (`processing` is what runs now).
    pub counts: Counts,
    pub paused: bool,
    /// At most this many of its jobs run at once; `None`: no limit.
    pub concurrency: Option<i64>,
}

/// A change to one queue's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueChange {
    Pause,
    Resume,
    /// `None` lifts the limit.
    Concurrency(Option<i64>),
}

/// The reads and writes [`settle_dependents`] needs, inside the caller's
/// transaction.
pub(crate) trait Dependents {
    /// One more job that `id`'s dependents run after has completed: each pending
    /// dependent still waiting counts one fewer, and starts when none is left.
    fn release(&mut self, id: &str) -> Result<()>;
    /// The pending jobs still waiting for `id`.
    fn waiting_for(&mut self, id: &str) -> Result<Vec<Job>>;
    /// Applies `transition` to waiting job `job` (if it still waits); returns
    /// whether some job runs after it in turn.
    fn cancel_waiting(&mut self, job: &Job, transition: &Transition) -> Result<bool>;
}

/// Carries the end of job `id` (in `state`) to the jobs that run after it: a
/// completed job releases them, a dead or cancelled one cancels them and, through
/// them, everything further down the chain.
pub(crate) fn settle_dependents(
    store: &mut dyn Dependents,
    id: &str,
    state: JobState,
) -> Result<()> {
    match state {
        JobState::Completed => store.release(id),
        JobState::Dead | JobState::Cancelled => {
            let origin = (id.to_owned(), state);
            let mut ended = vec![id.to_owned()];
            while let Some(parent) = ended.pop() {
                for waiting in store.waiting_for(&parent)? {
                    let cause = job::DependencyEnd {
                        after: &parent,
                        origin: (&origin.0, origin.1),
                    };
                    let transition = job::after_dependency_ended(&waiting, &cause);
                    if store.cancel_waiting(&waiting, &transition)? {
                        ended.push(waiting.id.clone());
                    }
                }
            }
            Ok(())
        }
        JobState::Pending | JobState::Processing | JobState::Failed => Ok(()),
    }
}

/// Adds `n` jobs in `state` (as stored) to `queue`'s row, creating the row if the
/// queue has no settings; unknown states (a newer release's) are not counted.
pub(crate) fn add_count(rows: &mut Vec<QueueRow>, queue: &str, state: &str, n: i64) {
    let Ok(state) = state.parse::<JobState>() else {
        return;
    };
    let at = match rows.iter().position(|r| r.name == queue) {
        Some(at) => at,
        None => {
            rows.push(QueueRow {
                name: queue.to_owned(),
                ..QueueRow::default()
            });
            rows.len() - 1
        }
    };
    *rows[at].counts.by_state.entry(state).or_insert(0) += n;
}
