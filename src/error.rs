//! The errors a user can see, and the exit code each one maps to.
//!
//! Exit codes are decided here and nowhere else: 2 for input the user can fix by
//! changing the command line ([`InputError`], a store that is not a queuectl database),
//! 1 for everything that went wrong at run time (job not found, store unreachable).

use thiserror::Error;

/// Invalid input: exit 2, and the store is left untouched.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InputError {
    #[error(
        "invalid job JSON: {0}; expected an object like {{\"command\":\"echo hi\"}} with optional \"id\", \"max_retries\", \"timeout\", \"priority\", \"run_at\", \"delay\", \"queue\", \"after\", \"unique_key\", \"env\" and \"cwd\""
    )]
    Json(String),
    #[error(
        "unknown state '{0}'; valid states are pending, processing, completed, failed, dead, cancelled"
    )]
    UnknownState(String),
    #[error("{0}")]
    Invalid(String),
}

/// Any error kept as the cause of another (a driver's, the operating system's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to a store. Variants that wrap a failure keep it as their
/// `source`, so the driver's or the operating system's own error stays inspectable;
/// the message already says it in words, for the one-line error users see.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store path or URL is unusable as given: fix the argument.
    #[error("{0}")]
    BadLocation(String),
    /// A reading command found no store where it looked, and created none: `{0}`
    /// names the place and how to create a store there.
    #[error("{0}")]
    Missing(String),
    /// The store can be read but not written by this user here (a read-only file
    /// system or mount, file permissions, a read-only PostgreSQL role or server):
    /// `{0}` names the store and the problem.
    #[error("{0}")]
    ReadOnly(String),
    /// The store was written by a newer queuectl.
    #[error(
        "the store has schema version {found}, newer than this queuectl understands ({supported}); upgrade queuectl"
    )]
    TooNew { found: i64, supported: i64 },
    #[error(
        "a job with id '{0}' already exists; choose another id or leave \"id\" out to get one generated"
    )]
    DuplicateId(String),
    #[error("no job with id '{0}'; `queuectl list` shows the ids")]
    NotFound(String),
    /// `after` names jobs the store does not hold: nothing was enqueued.
    #[error(
        "after: no job with id {}; give the ids of existing jobs (`queuectl list` shows them)",
        .0.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ")
    )]
    UnknownAfter(Vec<String>),
    /// The request does not fit the job's current state.
    #[error("{0}")]
    Conflict(String),
    /// The database is there but failed (locked for too long, disk full, connection
    /// lost), or holds something this queuectl cannot read.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A file or directory the store keeps beside its database (the store's directory,
    /// the spool, the WAL watch), or a thread it needs, could not be had.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The database failed in a way `message` describes in full.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// The database failed with `source`; `message` says what that means (and
    /// usually quotes it, since users see only the message).
    pub fn unavailable_because(
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `what` could not be done to a local file, directory or thread.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Why a worker process, or `bench` driving one, could not go on: the store failed,
/// or the machine refused something the worker itself needs (a thread, the spool, a
/// process). Kept apart from [`StoreError`] so a full spool or a thread limit is never
/// reported as the database's fault.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A measurement could not be completed (`bench`): what happened and what to check.
    #[error("{0}")]
    Stalled(String),
    /// A local file the worker would use (its spool) fails the ownership and
    /// permission checks of [`crate::file_trust`].
    #[error(transparent)]
    Untrusted(#[from] crate::file_trust::Untrusted),
}

impl WorkerError {
    /// `what` could not be done to a local file, process or thread.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> WorkerError {
        WorkerError::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error with the exit code it deserves. Everything a command returns is turned
/// into one of these at the edge (`cli::run`).
#[derive(Debug, Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Failure {
        Failure::usage(e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::BadLocation(_)
            | StoreError::ReadOnly(_)
            | StoreError::TooNew { .. }
            | StoreError::DuplicateId(_)
            | StoreError::UnknownAfter(_) => 2,
            StoreError::NotFound(_)
            | StoreError::Missing(_)
            | StoreError::Conflict(_)
            | StoreError::Unavailable { .. }
            | StoreError::Io { .. } => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

impl From<WorkerError> for Failure {
    fn from(e: WorkerError) -> Failure {
        match e {
            WorkerError::Store(e) => e.into(),
            WorkerError::Untrusted(e) => Failure::usage(e.0),
            other => Failure::runtime(other.to_string()),
        }
    }
}
