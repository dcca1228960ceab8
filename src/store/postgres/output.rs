//! Output in the store: chunks of running attempts (`output_chunks`), written by the
//! worker round trip and replaced by the attempt's kept output when it ends (see
//! `RECORD_FINISHED`), and reading either back for `logs`.
//!
//! Invariants, as on SQLite: a chunk is stored only while its job is still
//! `processing` under the chunk's lease; past `output-limit` the chunks the worker
//! says to drop go in the same transaction; a read never sees a finished attempt
//! without its kept output (the attempt and the job are read in one statement).

use std::collections::HashMap;

use postgres::{GenericClient, Transaction};

use super::{Db, Step};
use crate::error::StoreError;
use crate::store::{OutputChunk, OutputRead, control};

/// Stores each chunk (arrays `$1`..`$4`) whose run still holds its job; a chunk
/// shipped twice replaces itself.
const INSERT_CHUNKS: &str = "INSERT INTO output_chunks (job_id, lease_token, byte_offset, data) \
    SELECT c.job_id, c.token, c.byte_offset, c.data \
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[]) \
        AS c(job_id, token, byte_offset, data) \
    JOIN jobs j ON j.id = c.job_id AND j.lease_token = c.token AND j.state = 'processing' \
    ON CONFLICT (job_id, lease_token, byte_offset) DO UPDATE SET data = excluded.data";

/// Drops, for each run still holding its job (arrays `$1`..`$4`), its stored chunks
/// that lie wholly in `[keep_head, drop_before)`: the middle of an output past its
/// limit.
const DROP_CHUNKS: &str = "DELETE FROM output_chunks o \
    USING unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
        AS d(job_id, token, keep_head, drop_before), jobs j \
    WHERE j.id = d.job_id AND j.lease_token = d.token AND j.state = 'processing' \
    AND o.job_id = d.job_id AND o.lease_token = d.token \
    AND o.byte_offset >= d.keep_head AND o.byte_offset + octet_length(o.data) <= d.drop_before";

/// Whether job `$1` exists, and the kept output of its attempt `$2` if that ended
/// with how much it printed in all (an imported attempt may not say: then what was
/// kept).
pub(super) const READ_KEPT_OUTPUT: &str = "SELECT a.lease_token IS NOT NULL, a.output, \
    coalesce(a.output_total, octet_length(a.output), 0) FROM jobs j \
    LEFT JOIN attempts a ON a.job_seq = j.seq AND a.lease_token = $2 WHERE j.id = $1";

/// The chunks of a running attempt that end after `$3`, in order.
const READ_CHUNKS: &str = "SELECT byte_offset, data FROM output_chunks \
    WHERE job_id = $1 AND lease_token = $2 AND byte_offset + octet_length(data) > $3 \
    ORDER BY byte_offset";

/// Stores new output of running attempts: two statements however many chunks.
pub(super) fn store_chunks(db: &mut Db<'_, Transaction<'_>>, chunks: &[OutputChunk]) -> Step<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    // One row per (run, offset): a statement may not write a row twice.
    let mut latest: HashMap<(&str, i64, u64), &OutputChunk> = HashMap::new();
    for c in chunks {
        latest.insert((c.lease.job_id.as_str(), c.lease.token, c.offset), c);
    }
    let unique: Vec<&OutputChunk> = chunks
        .iter()
        .filter(|c| {
            latest
                .get(&(c.lease.job_id.as_str(), c.lease.token, c.offset))
                .is_some_and(|kept| std::ptr::eq(*kept, *c))
        })
        .collect();
    let ids: Vec<&str> = unique.iter().map(|c| c.lease.job_id.as_str()).collect();
    let tokens: Vec<i64> = unique.iter().map(|c| c.lease.token).collect();
    let offsets: Vec<i64> = unique.iter().map(|c| offset(c.offset)).collect();
    let data: Vec<&[u8]> = unique.iter().map(|c| c.data.as_slice()).collect();
    db.execute(INSERT_CHUNKS, &[&ids, &tokens, &offsets, &data])?;

    let dropping: Vec<&OutputChunk> = chunks
        .iter()
        .filter(|c| c.drop_before > c.keep_head)
        .collect();
    if dropping.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = dropping.iter().map(|c| c.lease.job_id.as_str()).collect();
    let tokens: Vec<i64> = dropping.iter().map(|c| c.lease.token).collect();
    let heads: Vec<i64> = dropping.iter().map(|c| offset(c.keep_head)).collect();
    let befores: Vec<i64> = dropping.iter().map(|c| offset(c.drop_before)).collect();
    db.execute(DROP_CHUNKS, &[&ids, &tokens, &heads, &befores])?;
    Ok(())
}

/// The output of run `lease_token` of `job_id` from byte `from` on (see
/// [`crate::store::Store::output`]).
pub(super) fn read<C: GenericClient>(
    db: &mut Db<'_, C>,
    job_id: &str,
    lease_token: i64,
    from: u64,
) -> Step<OutputRead> {
    let Some(row) = db.query_opt(READ_KEPT_OUTPUT, &[&job_id, &lease_token])? else {
        return Err(StoreError::NotFound(job_id.to_owned()));
    };
    if row.try_get(0)? {
        let bytes: Option<Vec<u8>> = row.try_get(1)?;
        return Ok(control::kept_output_read(
            bytes.unwrap_or_default(),
            row.try_get(2)?,
            from,
        ));
    }
    // Still running (or not started): if it ends between the two statements, its
    // chunks are gone and this read is empty; the next one finds the kept output.
    let rows = db.query(READ_CHUNKS, &[&job_id, &lease_token, &offset(from)])?;
    let chunks = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Step<Vec<(i64, Vec<u8>)>>>()?;
    Ok(control::chunks_read(chunks, from))
}

/// A byte offset as PostgreSQL stores it.
fn offset(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}
