//! What the control operations mean, once for both backends: which states a `retry`
//! or `clean` takes, how long ended worker rows stay, and how the rows of an
//! attempt's output become an [`OutputRead`]. A backend only runs the SQL.

use std::time::Duration;

use crate::error::StoreError;
use crate::job::{Job, JobState, Transition};
use crate::store::{OutputRead, Result};

/// How long the row of a stopped or lost worker stays for `worker list --all`
/// before `clean` (or retention) deletes it.
pub(crate) const ENDED_WORKER_KEPT: Duration = Duration::from_secs(24 * 60 * 60);

/// What a retry applies to each job it takes: [`crate::job::after_retry`] for
/// `retry`, [`crate::job::after_dlq_retry`] for `dlq retry`. Both backends run one
/// retry operation and differ only in this rule.
pub(crate) type RetryRule = fn(&str, Option<&Job>) -> std::result::Result<Transition, StoreError>;

/// The finished states a `retry` or `clean` by state takes: those named (each once,
/// in [`JobState::FINISHED`] order), or all of them when none are. An unfinished
/// state is refused rather than ignored: neither operation ever touches such a job.
pub(crate) fn finished_states(states: &[JobState]) -> Result<Vec<JobState>> {
    if let Some(unfinished) = states.iter().find(|s| !JobState::FINISHED.contains(s)) {
        return Err(StoreError::Conflict(format!(
            "{unfinished} jobs are not finished; only completed, dead and cancelled jobs \
             can be retried or cleaned (`queuectl cancel` ends an unfinished one)"
        )));
    }
    Ok(JobState::FINISHED
        .into_iter()
        .filter(|s| states.is_empty() || states.contains(s))
        .collect())
}

/// A finished attempt's kept output (`bytes`, of `total` printed) from byte `from`
/// on: one piece, or none once `from` is past its end.
pub(crate) fn kept_output_read(bytes: Vec<u8>, total: i64, from: u64) -> OutputRead {
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    let pieces = match bytes.get(start..) {
        Some(rest) if !rest.is_empty() => vec![(from, rest.to_vec())],
        _ => Vec::new(),
    };
    OutputRead {
        finished: true,
        pieces,
        total: u64::try_from(total).unwrap_or(0),
    }
}

/// A running attempt's stored chunks (offset, data), in order, each ending after
/// `from`: the first is cut to start at `from`.
pub(crate) fn chunks_read(chunks: Vec<(i64, Vec<u8>)>, from: u64) -> OutputRead {
    let pieces = chunks
        .into_iter()
        .map(|(at, mut data)| {
            let at = u64::try_from(at).unwrap_or(0);
            if at < from {
                let skip = usize::try_from(from - at).unwrap_or(usize::MAX);
                data.drain(..skip.min(data.len()));
                (from, data)
            } else {
                (at, data)
            }
        })
        .filter(|(_, data)| !data.is_empty())
        .collect();
    OutputRead {
        finished: false,
        pieces,
        total: 0,
    }
}

/// The refusal of a `retry` of job `id` whose unique key the unfinished job
/// `holder` holds: the retry changes nothing.
pub(crate) fn unique_key_taken(id: &str, holder: Option<&str>) -> StoreError {
    let holder = holder.map_or_else(|| "another job".to_owned(), |h| format!("job '{h}'"));
    StoreError::Conflict(format!(
        "cannot retry job '{id}': unfinished {holder} holds its unique key; nothing was retried (cancel or wait for it first)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_from_inside_a_chunk_starts_there() {
        let read = chunks_read(vec![(0, b"abcd".to_vec()), (8, b"ijkl".to_vec())], 2);
        assert_eq!(read.pieces, [(2, b"cd".to_vec()), (8, b"ijkl".to_vec())]);
        assert!(!read.finished);
    }

    #[test]
    fn kept_output_is_read_from_an_offset() {
        let read = kept_output_read(b"hello".to_vec(), 9, 3);
        assert_eq!((read.finished, read.total), (true, 9));
        assert_eq!(read.pieces, [(3, b"lo".to_vec())]);
        assert!(kept_output_read(b"hello".to_vec(), 5, 5).pieces.is_empty());
        assert!(kept_output_read(Vec::new(), 0, 0).pieces.is_empty());
    }
}
