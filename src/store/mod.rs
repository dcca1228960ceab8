//! Persistence: the [`Store`] trait and one module per backend.
//!
//! A store persists jobs, attempts, workers and settings, and offers each operation
//! the queue needs as one atomic call. It never decides what a job's next state is:
//! callers hand it [`Transition`]s computed by [`crate::job`], and it applies them
//! *fenced*, that is only while the job is still `processing` under the lease token
//! the caller holds. SQL and dialect details stay inside the backend modules.
//!
//! Times are Unix milliseconds from the store's own clock (the local clock for
//! SQLite, the database server's for PostgreSQL), so workers on hosts with skewed
//! clocks still agree on leases and backoff.

use std::collections::BTreeMap;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::job::output::KeptOutput;
use crate::job::{AttemptOutcome, Job, JobState, NewJob, Transition};

mod activity;
pub(crate) mod control;
pub mod cron;
pub mod duty;
pub mod ids;
mod layout;
mod listing;
mod location;
pub mod postgres;
mod records;
pub(crate) mod rows;
pub mod schedule;
pub mod sqlite;
pub mod stats;
mod worker_rows;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A duration as the whole milliseconds stores add to their clock (saturating).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub use activity::Throughput;
pub use cron::{CronEntry, CronFired, CronRun, NewCronEntry};
pub use duty::Duty;
pub use listing::{JobListing, JobOrder};
pub use location::{IfMissing, Location, OpenFor, data_home, open, remove_scratch};
pub(crate) use records::RecordStream;
pub use records::{Emit, JobRecord};
pub use schedule::{QueueChange, QueueRow};
pub use worker_rows::{
    EndedLease, LeaseCheck, RunningJob, StopRequest, WorkerInfo, WorkerRow, WorkerState,
};

/// What `enqueue` did, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// When the jobs were created, by the store's clock.
    pub created_at: i64,
    /// For each job given, in order: `Some(id)` when nothing was created because the
    /// unfinished job `id` holds the same unique key.
    pub existing: Vec<Option<String>>,
}

/// Identifies one run of a job: the fencing token every write about the run carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub job_id: String,
    pub token: i64,
}

/// What the worker saw of one attempt's process, for the history (`show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFacts {
    /// The host the attempt ran on (`QUEUECTL_HOSTNAME` or the hostname).
    pub host: Option<String>,
    /// The shell's pid.
    pub pid: Option<i64>,
    /// The signal that ended the shell, if one did.
    pub signal: Option<i64>,
    /// Peak resident memory of the attempt's processes (`wait4`'s `ru_maxrss`), KiB.
    pub max_rss_kb: Option<i64>,
    /// User plus system CPU time of the attempt's processes, milliseconds.
    pub cpu_ms: Option<i64>,
}

/// New output of a running attempt, shipped by its worker (at most once a second,
/// and only for attempts that run longer than that). Fenced like every write about
/// a run: ignored unless the job still runs under `lease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub lease: Lease,
    /// Where `data` starts in everything the attempt printed.
    pub offset: u64,
    pub data: Vec<u8>,
    /// Stored chunks of this attempt that start at or after `keep_head` and end at
    /// or before `drop_before` are deleted: past `output-limit`, only the first half
    /// and the newest bytes stay, so the store holds about `output-limit` per attempt.
    pub keep_head: u64,
    pub drop_before: u64,
}

/// What a store has of one attempt's output, from a given offset on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputRead {
    /// The attempt ended: `pieces` is its kept output (one piece at offset 0, which
    /// may hold an omission line) and no more will come.
    pub finished: bool,
    /// (offset, bytes) in order; a gap between pieces is output that was dropped.
    pub pieces: Vec<(u64, Vec<u8>)>,
    /// With `finished`: everything the attempt printed, kept or not.
    pub total: u64,
}

/// Which finished jobs `clean` (or retention) deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanRequest {
    /// Among [`JobState::FINISHED`]; empty means all of them.
    pub states: Vec<JobState>,
    /// Only jobs that finished at least this long ago (by the store's clock).
    pub older_than: Option<Duration>,
    /// At most this many jobs in one call (retention deletes in small batches).
    pub limit: Option<usize>,
}

/// What `clean` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub jobs: u64,
    /// Stopped and lost worker rows that ended over a day ago.
    pub workers: u64,
}

/// A finished (or interrupted) run to record, fenced by its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub lease: Lease,
    pub worker_id: Option<String>,
    pub outcome: AttemptOutcome,
    pub transition: Transition,
    pub output_tail: Option<String>,
    /// The attempt's whole kept output; replaces any chunks shipped while it ran.
    pub output: Option<KeptOutput>,
    pub facts: AttemptFacts,
    /// Only apply if the lease has expired by the store's clock (used by recovery, so
    /// a slow but live worker that renewed in the meantime keeps its job).
    pub only_if_expired: bool,
}

/// One attempt from the history, for `show`, `export` and `import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub lease_token: i64,
    pub worker_id: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// The last few KiB of the attempt's output.
    pub output_tail: Option<String>,
    pub facts: AttemptFacts,
    /// Bytes the attempt printed in all (its kept output may be shorter).
    pub output_total: Option<i64>,
}

/// Job counts per state and the oldest pending job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_state: BTreeMap<JobState, i64>,
    /// Since when the longest-waiting `pending` job has been claimable (its
    /// `next_run_at`): the queue's lag.
    pub oldest_pending_at: Option<i64>,
    /// The store's clock when the counts were taken.
    pub now: i64,
}

impl Counts {
    pub fn get(&self, state: JobState) -> i64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }
}

/// Identifies one worker process (all the workers one `worker start` runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessKey {
    pub host: String,
    pub pid: i64,
}

/// One round trip of a worker process: everything it has to tell the store and
/// everything it wants from it, in one transaction (group commit).
#[derive(Debug, Default)]
pub struct Exchange<'a> {
    /// Runs that ended since the last exchange.
    pub finished: &'a [Finished],
    /// Leases to renew: the jobs this process is running.
    pub renew: &'a [Lease],
    /// The process asking: stop requests to its workers are read, and with `beat`
    /// their heartbeat is renewed. Reading alone writes nothing, so wake-ups caused
    /// by our own commits do not cause more commits.
    pub process: Option<&'a ProcessKey>,
    pub beat: bool,
    /// Idle workers that want a job: up to one job is claimed for each entry, in
    /// order (a worker may appear several times to claim ahead).
    pub claim_for: &'a [String],
    /// Running jobs that moved to another worker of this process: the store records
    /// the worker that runs them (fenced like every write about a run).
    pub reassign: &'a [(Lease, String)],
    /// New output of long-running attempts.
    pub output: &'a [OutputChunk],
    /// Whether this process runs anything: only then are cancel requests read.
    pub check_cancels: bool,
    pub lease_timeout: Duration,
    /// The queues this process serves (`worker start --queue`); `None`: all.
    pub queues: Option<&'a [String]>,
    /// A hint from a process on duty whose last claim came up short and that has
    /// been woken by nothing since (DECISIONS §26): only work that this round trip's
    /// finished runs free can be new to it, so a store may skip the claim (saying so
    /// in [`ExchangeReply::claim_skipped`]) when every run it records ended
    /// `completed`, `dead` or `cancelled` without dependents and no queue has a
    /// concurrency limit. A store may always claim.
    pub claim_if_freed: bool,
}

impl Exchange<'_> {
    /// Whether this round trip writes. One that only reads the stop request must not
    /// commit, so that the wake-ups a process's own commits cause elsewhere do not
    /// cause more commits.
    pub fn writes(&self) -> bool {
        !self.finished.is_empty()
            || !self.reassign.is_empty()
            || !self.renew.is_empty()
            || self.beat
            || !self.claim_for.is_empty()
            || !self.output.is_empty()
    }
}

/// The store's answer to an [`Exchange`].
#[derive(Debug, Default)]
pub struct ExchangeReply {
    /// Jobs claimed, each paired with the worker it was claimed for.
    pub claimed: Vec<(String, Job)>,
    /// Finished runs that were not recorded because the lease was no longer theirs.
    pub rejected: Vec<Lease>,
    /// Leases that could not be renewed: another worker owns the job now.
    pub lost: Vec<Lease>,
    /// The strongest stop request addressed to the process's live workers.
    pub stop: StopRequest,
    /// When fewer jobs were claimed than asked: how long until the next `failed` job
    /// becomes claimable, if any.
    pub next_due_in: Option<Duration>,
    /// With [`Exchange::check_cancels`]: every running job a user cancelled (the
    /// worker stops those it runs; usually none).
    pub cancel: Vec<Lease>,
    /// With [`Exchange::claim_if_freed`]: the claim was not run (nothing claimed,
    /// `next_due_in` not read).
    pub claim_skipped: bool,
}

/// Called when the store may have new work (a cross-process wake-up).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The operations queuectl needs from a backend. Each method is one transaction.
pub trait Store: Send {
    /// Where this store is, safe to print.
    fn describe(&self) -> String;

    /// The directory for per-attempt output files and run markers on this host.
    fn spool_dir(&self) -> PathBuf;

    /// Starts delivering wake-ups to `wake` from a background thread, for watchers
    /// (`wait`, `logs -f`): on SQLite every commit, job ends and shipped output
    /// included; PostgreSQL has only its `NOTIFY`s, and its watchers poll for the
    /// rest. Callers still poll as a fallback.
    fn subscribe(&self, wake: Wake) -> Result<()>;

    /// Wake-ups for a worker process: only work (jobs made claimable, stop and
    /// cancel requests, queue and cron changes; a worker's own claims and plain
    /// finishes wake no one). PostgreSQL: `NOTIFY`, a one-job enqueue heard only by
    /// the process on `duty` for its queue set; SQLite: the store's doorbell file
    /// (`sqlite::wake`).
    fn subscribe_worker(&self, wake: Wake, duty: Arc<Duty>) -> Result<()>;

    /// Whether another connection may have changed the store since the last call.
    /// Lets a worker ignore the wake-ups its own commits cause.
    fn changed_elsewhere(&mut self) -> bool {
        true
    }

    /// All stored settings (see [`crate::config`]).
    fn settings(&mut self) -> Result<BTreeMap<String, String>>;
    fn set_setting(&mut self, key: &str, value: &str) -> Result<()>;

    /// Inserts all jobs or none (a duplicate id fails the whole batch). Returns the
    /// store time used as their `created_at`.
    fn enqueue(&mut self, jobs: &[NewJob]) -> Result<Enqueued>;

    fn job(&mut self, id: &str) -> Result<Option<Job>>;
    /// The ids that start with `prefix` (byte for byte; `%` and `_` are plain
    /// characters): the first `limit` in byte order, and how many there are (see
    /// [`ids::IdMatches`]). One range read of the unique index on `id`, so what it
    /// costs grows with the number of matches, not the size of the store; the count
    /// is only made when more than `limit` match. For typing a few characters of an
    /// id wherever one is taken (`cli::ids`).
    fn ids_with_prefix(&mut self, prefix: &str, limit: usize) -> Result<ids::IdMatches>;
    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>>;
    /// Jobs in creation order, optionally of one state and at most `limit`.
    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>>;
    /// `list` with an order and an end to keep (see [`JobListing`]): reads only the
    /// rows it returns, so a page of a large store is cheap.
    fn list_jobs(&mut self, listing: &JobListing) -> Result<Vec<Job>>;
    fn counts(&mut self) -> Result<Counts>;
    /// Whether any job is `processing` or `failed` (waiting for its retry): what
    /// `worker --burst` waits for before it exits. Reads only the small partial
    /// indexes of those states; [`Store::counts`] also counts the completed jobs,
    /// which costs a lookup per job completed in the last minutes.
    fn jobs_in_flight(&mut self) -> Result<bool>;
    /// Attempts that finished in the last `window` by the store's clock, counted per
    /// `bucket` (see [`Throughput`]): the dashboard's chart. One grouped read of the
    /// attempts in the window.
    fn throughput(&mut self, window: Duration, bucket: Duration) -> Result<Throughput>;

    /// Puts dead jobs back to `pending`, applying [`crate::job::after_dlq_retry`] to
    /// each. All or nothing: if any id is unknown or not dead, nothing changes. `None`
    /// retries every dead job. Returns the ids retried, in the order given (for
    /// `None`: creation order).
    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>>;

    /// `retry`: puts finished jobs (`completed`, `dead`, `cancelled`) back to
    /// `pending`, applying [`crate::job::after_retry`] to each, all or nothing. With
    /// `ids` `None`, every job in one of `states` (all finished states when empty;
    /// an unfinished state is refused with [`StoreError::Conflict`]), in creation
    /// order. History and output stay. Wakes workers. Returns the ids retried.
    fn retry(&mut self, ids: Option<&[String]>, states: &[JobState]) -> Result<Vec<String>>;

    /// `cancel`: decides with [`crate::job::plan_cancel`] (all or nothing, refusing
    /// unknown and finished ids), then cancels `pending`/`failed` jobs at once and
    /// marks `processing` ones for their worker. Wakes workers. Returns the plan.
    fn cancel(&mut self, ids: &[String]) -> Result<Vec<(String, crate::job::Cancel)>>;

    /// Deletes finished jobs with their attempts and output, and worker rows that
    /// ended over a day ago. Never an unfinished job: an unfinished state in
    /// `request.states` is refused with [`StoreError::Conflict`]. With a `limit`, the
    /// oldest jobs (by creation) go first.
    fn clean(&mut self, request: &CleanRequest) -> Result<Cleaned>;

    /// The output of attempt `lease_token` of `job_id` from byte `from` on: the kept
    /// output of a finished attempt, or the chunks shipped so far by a running one.
    /// An attempt with no row in the history yet (running, or not started) reads as
    /// not `finished`; an unknown job is [`StoreError::NotFound`].
    fn output(&mut self, job_id: &str, lease_token: i64, from: u64) -> Result<OutputRead>;

    fn register_workers(&mut self, workers: &[WorkerInfo]) -> Result<()>;
    /// Marks workers as ended (`stopped` or `lost`).
    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()>;
    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>>;
    /// Asks live workers (on `host`, or everywhere) to stop; returns their ids.
    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>>;

    /// The worker round trip; see [`Exchange`].
    fn exchange(&mut self, exchange: &Exchange<'_>) -> Result<ExchangeReply>;

    /// Every job in `processing`, for recovery.
    fn running_jobs(&mut self) -> Result<Vec<RunningJob>>;

    /// What the store holds for a worker process whose last round trip may or may
    /// not have committed: the `processing` jobs leased to any of `workers`, and
    /// which of `leases` (results it sent) ended under that lease, with the attempt
    /// recorded for each. Reads only; the worker gives back the claims it never
    /// received with its next round trip (`worker::reconcile`).
    fn reconcile(&mut self, workers: &[String], leases: &[Lease]) -> Result<LeaseCheck>;

    /// Every job (or those in `state`) with its attempts, in creation order, read
    /// from one consistent snapshot (one statement) and handed to `emit` one job at
    /// a time, so an export of millions of jobs holds one in memory. Stops early,
    /// without error, when `emit` returns `Break`. For `export`.
    fn export(&mut self, state: Option<JobState>, emit: Emit<'_>) -> Result<()>;

    /// Inserts jobs exactly as given (states, counters, times, attempt history), all
    /// or nothing in one transaction, in the given order. A duplicate id fails the
    /// whole batch with [`StoreError::DuplicateId`]. The caller (see
    /// [`crate::transfer`]) has already turned `processing` jobs into `pending` ones
    /// and made `lease_token` at least the newest attempt's, so future claims get
    /// fresh tokens. Wakes idle workers like `enqueue`. For `import`.
    fn import(&mut self, jobs: &[JobRecord]) -> Result<()>;

    /// Every queue that has jobs or settings, by name, with its counts by state.
    fn queues(&mut self) -> Result<Vec<QueueRow>>;
    /// Pauses, resumes or limits queue `name` (which need not have jobs yet), and
    /// wakes idle workers.
    fn set_queue(&mut self, name: &str, change: QueueChange) -> Result<()>;

    // Recurring jobs (cron): see [`cron`] for how entries fire exactly once per tick.

    /// `cron add`: stores `entry` with its first tick strictly after the store's
    /// clock, and wakes workers. `None` when an entry of that name exists: nothing
    /// is written.
    fn cron_add(&mut self, entry: &NewCronEntry) -> Result<Option<CronEntry>>;
    /// Every entry, by name.
    fn cron_list(&mut self) -> Result<Vec<CronEntry>>;
    /// Deletes entry `name` (the jobs it enqueued stay); `false` if there is none.
    fn cron_remove(&mut self, name: &str) -> Result<bool>;
    /// Pauses or resumes entry `name`. Resuming a paused entry skips the ticks
    /// missed while paused (its next tick is the first after the store's clock) and
    /// wakes workers. Returns the entry as it is now, `None` if there is none.
    fn cron_set_paused(&mut self, name: &str, paused: bool) -> Result<Option<CronEntry>>;
    /// For workers: enqueues one run for every entry that is due, exactly once
    /// across every worker on the store (see [`cron`]), all in one transaction, and
    /// says when the next entry is due. Cheap (one read, no write) when nothing is.
    fn cron_fire(&mut self) -> Result<CronFired>;

    // Stats and metrics (issue 13): raw aggregates, see [`stats`].

    /// `stats`: what finished in the request's window, the backlog now, and samples
    /// for percentiles, per queue, in one consistent read.
    fn stats(&mut self, request: &stats::StatsRequest) -> Result<stats::StatsRaw>;
    /// `metrics`: jobs per queue and state, the whole attempt history in histogram
    /// cells, the oldest ready job of each queue. May first move the history's
    /// rollup forward (a small write), so its cost stays that of the newest
    /// attempts.
    fn metrics(&mut self) -> Result<stats::MetricsRaw>;
}
