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
        "invalid job JSON: {0}; expected an object like {{\"command\":\"echo hi\"}} with optional \"id\" and \"max_retries\""
    )]
    Json(String),
    #[error("unknown state '{0}'; valid states are pending, processing, completed, failed, dead")]
    UnknownState(String),
    #[error("{0}")]
    Invalid(String),
}

/// What went wrong talking to a store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store path or URL is unusable as given: fix the argument.
    #[error("{0}")]
    BadLocation(String),
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
    /// The request does not fit the job's current state.
    #[error("{0}")]
    Conflict(String),
    /// The store is there but failed (locked for too long, disk full, connection lost).
    #[error("{0}")]
    Unavailable(String),
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
            StoreError::BadLocation(_) | StoreError::TooNew { .. } | StoreError::DuplicateId(_) => {
                2
            }
            StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Unavailable(_) => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}
