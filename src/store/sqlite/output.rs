//! Output in the store: chunks of running attempts (`output_chunks`), written by the
//! worker round trip and replaced by the attempt's kept output when it ends, and
//! reading either back for `logs`.
//!
//! Invariants kept here:
//! - A chunk is stored only while its job is still `processing` under the chunk's
//!   lease, so a worker that lost its job cannot add output to the next run.
//! - Past `output-limit`, the chunks the worker says to drop go in the same
//!   transaction that stores the new one, so an attempt holds about the limit.
//! - A read sees the attempt's row and its chunks in one snapshot (the caller's
//!   transaction): never a finished attempt with half its chunks.

use rusqlite::{OptionalExtension, Transaction, params};

use super::db_error;
use crate::error::StoreError;
use crate::store::control;
use crate::store::{Lease, OutputChunk, OutputRead, Result};

/// Stores one chunk if its run still holds the job (a chunk shipped twice replaces
/// itself).
const INSERT_CHUNK: &str = "INSERT OR REPLACE INTO output_chunks (job_id, lease_token, \
     byte_offset, data) SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM jobs \
     WHERE id = ?1 AND lease_token = ?2 AND state = 'processing')";

/// Drops the stored chunks of a run that lie wholly in `[?3, ?4)`: the middle of an
/// output past its limit.
const DROP_CHUNKS: &str = "DELETE FROM output_chunks WHERE job_id = ?1 AND lease_token = ?2 \
     AND byte_offset >= ?3 AND byte_offset + length(data) <= ?4";

/// Every chunk of a run: its kept output replaces them.
const FORGET_CHUNKS: &str = "DELETE FROM output_chunks WHERE job_id = ?1 AND lease_token = ?2";

/// Whether any running attempt has shipped output: asked once per round trip, so
/// finishing the (usual) short jobs that shipped nothing costs no delete each.
const ANY_CHUNKS: &str = "SELECT EXISTS (SELECT 1 FROM output_chunks)";

/// A finished attempt's kept output and how much it printed in all (an imported
/// attempt may not say: then what was kept).
pub(super) const READ_KEPT_OUTPUT: &str = "SELECT output, coalesce(output_total, length(output), 0) FROM attempts \
     WHERE job_pos = (SELECT pos FROM jobs WHERE id = ?1) AND lease_token = ?2";

/// Whether the job exists.
const JOB_EXISTS: &str = "SELECT 1 FROM jobs WHERE id = ?1";

/// The chunks of a running attempt that end after `?3`, in order.
const READ_CHUNKS: &str = "SELECT byte_offset, data FROM output_chunks \
     WHERE job_id = ?1 AND lease_token = ?2 AND byte_offset + length(data) > ?3 \
     ORDER BY byte_offset";

/// Stores `chunk` if its lease still holds, then drops what it says to drop.
pub(super) fn store_chunk(tx: &Transaction<'_>, chunk: &OutputChunk) -> Result<()> {
    let lease = &chunk.lease;
    let stored = tx
        .prepare_cached(INSERT_CHUNK)
        .and_then(|mut s| {
            s.execute(params![
                lease.job_id,
                lease.token,
                offset(chunk.offset),
                chunk.data
            ])
        })
        .map_err(db_error)?;
    if stored > 0 && chunk.drop_before > chunk.keep_head {
        tx.prepare_cached(DROP_CHUNKS)
            .and_then(|mut s| {
                s.execute(params![
                    lease.job_id,
                    lease.token,
                    offset(chunk.keep_head),
                    offset(chunk.drop_before)
                ])
            })
            .map_err(db_error)?;
    }
    Ok(())
}

/// Deletes the chunks of a run that ended.
/// Whether `output_chunks` holds anything at all (see [`ANY_CHUNKS`]).
pub(super) fn any_chunks(tx: &Transaction<'_>) -> Result<bool> {
    tx.prepare_cached(ANY_CHUNKS)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)
}

pub(super) fn forget_chunks(tx: &Transaction<'_>, lease: &Lease) -> Result<()> {
    tx.prepare_cached(FORGET_CHUNKS)
        .and_then(|mut s| s.execute(params![lease.job_id, lease.token]))
        .map_err(db_error)?;
    Ok(())
}

/// The output of run `lease_token` of `job_id` from byte `from` on (see
/// [`crate::store::Store::output`]); inside a read transaction, so one snapshot.
pub(super) fn read(
    tx: &Transaction<'_>,
    job_id: &str,
    lease_token: i64,
    from: u64,
) -> Result<OutputRead> {
    let kept: Option<(Option<Vec<u8>>, i64)> = tx
        .prepare_cached(READ_KEPT_OUTPUT)
        .and_then(|mut s| {
            s.query_row(params![job_id, lease_token], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_error)?;
    if let Some((bytes, total)) = kept {
        return Ok(control::kept_output_read(
            bytes.unwrap_or_default(),
            total,
            from,
        ));
    }
    let exists = tx
        .prepare_cached(JOB_EXISTS)
        .and_then(|mut s| s.exists([job_id]))
        .map_err(db_error)?;
    if !exists {
        return Err(StoreError::NotFound(job_id.to_owned()));
    }
    let mut stmt = tx.prepare_cached(READ_CHUNKS).map_err(db_error)?;
    let rows = stmt
        .query_map(params![job_id, lease_token, offset(from)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(db_error)?;
    let chunks = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_error)?;
    Ok(control::chunks_read(chunks, from))
}

/// A byte offset as SQLite stores it.
fn offset(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}
