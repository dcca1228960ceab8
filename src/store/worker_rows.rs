//! What the store keeps about worker processes: their registration
//! ([`WorkerInfo`]), stop requests ([`StopRequest`]), the state `worker list` shows
//! ([`WorkerState`], derived from a row), and the running jobs recovery judges
//! ([`RunningJob`]).

use crate::store::Lease;

/// What a stop request asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum StopRequest {
    #[default]
    None,
    /// Finish the current job, then exit.
    Graceful,
    /// Kill the running jobs (they go back to `pending`), then exit.
    Force,
}

impl StopRequest {
    pub fn from_code(code: i64) -> StopRequest {
        match code {
            0 => StopRequest::None,
            1 => StopRequest::Graceful,
            _ => StopRequest::Force,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            StopRequest::None => 0,
            StopRequest::Graceful => 1,
            StopRequest::Force => 2,
        }
    }
}

/// A worker as registered by `worker start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// The process start time (clock ticks since boot on Linux), so a reused pid is
    /// not mistaken for the worker.
    pub pid_start: i64,
}

/// A worker's state as shown by `worker list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Idle,
    Busy,
    Stopping,
    Stopped,
    Lost,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
            WorkerState::Lost => "lost",
        }
    }

    /// Derives what `worker list` shows from the stored facts: how the worker ended
    /// (`end_state`, as stored), whether its heartbeat is older than the lease, the
    /// stop request addressed to it and whether it holds a job.
    pub fn derive(
        end_state: Option<&str>,
        stale: bool,
        stop: StopRequest,
        busy: bool,
    ) -> WorkerState {
        match end_state {
            Some("stopped") => WorkerState::Stopped,
            Some(_) => WorkerState::Lost,
            None if stale => WorkerState::Lost,
            None if stop != StopRequest::None => WorkerState::Stopping,
            None if busy => WorkerState::Busy,
            None => WorkerState::Idle,
        }
    }

    pub fn is_live(self) -> bool {
        matches!(
            self,
            WorkerState::Idle | WorkerState::Busy | WorkerState::Stopping
        )
    }
}

/// A worker row with its derived state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    pub info: WorkerInfo,
    pub state: WorkerState,
    pub job: Option<String>,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// A job in `processing`, with what recovery needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    pub lease: Lease,
    pub attempts: i64,
    pub interruptions: i64,
    pub worker: Option<WorkerInfo>,
    pub lease_expired: bool,
    /// A user cancelled the job while it ran: recovery ends it `cancelled` instead
    /// of running it again.
    pub cancel_requested: bool,
}

/// What the store says about a worker process's leases after a round trip whose
/// outcome it never learned (the reply was lost, or the commit failed in a way that
/// may have committed): read by [`Store::reconcile`](crate::store::Store::reconcile),
/// judged by `worker::reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseCheck {
    /// Every job in `processing` leased to one of the asked workers.
    pub held: Vec<crate::job::Job>,
    /// The asked leases whose job still carries that lease token but is no longer
    /// `processing`: their result (or release) was recorded.
    pub ended: Vec<EndedLease>,
}

/// A lease whose job ended under it, with what the history recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLease {
    pub lease: Lease,
    /// The outcome of the attempt recorded under this lease (`None`: no attempt
    /// row, as for a claim given back unstarted).
    pub outcome: Option<crate::job::AttemptOutcome>,
    /// The pid the attempt row recorded (the shell's), to tell the worker's own
    /// result from a recovery's.
    pub pid: Option<i64>,
}
