//! What `export` reads and `import` writes: a job with its whole attempt history
//! ([`JobRecord`]), and the stream both backends turn their export rows into
//! ([`RecordStream`]), so an export of millions of jobs holds one job in memory.

use std::ops::ControlFlow;

use crate::job::Job;
use crate::store::AttemptRecord;

/// A job with its whole attempt history: what `export` reads and `import` writes.
/// `job.output_tail` is ignored on import (it is derived from the attempts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub job: Job,
    /// Ordered by `lease_token`.
    pub attempts: Vec<AttemptRecord>,
}

/// Where [`Store::export`](crate::store::Store::export) sends each job; `Break` stops the export.
pub type Emit<'a> = &'a mut dyn FnMut(JobRecord) -> ControlFlow<()>;

/// Turns the rows of `jobs LEFT JOIN attempts ... ORDER BY job, lease_token` into one
/// [`JobRecord`] per job, emitted as soon as the next job's first row shows that the
/// previous one is complete. Both backends stream their export through it.
pub(crate) struct RecordStream<'a> {
    current: Option<JobRecord>,
    emit: Emit<'a>,
}

impl<'a> RecordStream<'a> {
    pub(crate) fn new(emit: Emit<'a>) -> Self {
        RecordStream {
            current: None,
            emit,
        }
    }

    /// Takes one row: the job's id, how to decode the job (done once per job) and
    /// the row's attempt, if it has one.
    pub(crate) fn row<E>(
        &mut self,
        id: &str,
        job: impl FnOnce() -> std::result::Result<Job, E>,
        attempt: impl FnOnce() -> std::result::Result<Option<AttemptRecord>, E>,
    ) -> std::result::Result<ControlFlow<()>, E> {
        if self.current.as_ref().is_none_or(|r| r.job.id != id) {
            let next = JobRecord {
                job: job()?,
                attempts: Vec::new(),
            };
            if let Some(done) = self.current.replace(next)
                && (self.emit)(done).is_break()
            {
                self.current = None;
                return Ok(ControlFlow::Break(()));
            }
        }
        if let (Some(attempt), Some(record)) = (attempt()?, self.current.as_mut()) {
            record.attempts.push(attempt);
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Emits the last job; call after the last row.
    pub(crate) fn finish(mut self) {
        if let Some(last) = self.current.take() {
            let _ = (self.emit)(last);
        }
    }
}
