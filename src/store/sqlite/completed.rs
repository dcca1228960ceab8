//! Completed jobs per queue without reading the jobs table (issue 13):
//! `completed_rollup` plus the *located* ones, those whose succeeded last attempt
//! finished at or after the mark `stats_rolled.jobs_until` (see migration 0006 and
//! [`crate::store::stats`]); the other states come from their partial indexes
//! (`stats::job_counts`, `jobs::counts`).
//!
//! Invariants: `completed_rollup` holds, per queue, the completed jobs that are not
//! located at the mark. Claims and finishes never touch it (a job completed by a
//! worker is located: its attempt finished at the transaction's `now`, after the
//! mark, which stays [`stats::ROLL_LAG_MS`] behind the clock). Everything else that
//! changes the set keeps it, inside its own write transaction (which keeps every
//! other writer out): [`roll_if_due`] adds what the mark passes, `retry` and `clean`
//! take away the unlocated completed jobs they change ([`unroll_job`],
//! [`Unrolled`]), `import` adds the ones it brings ([`roll_in_since`]).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::db_error;
use crate::store::Result;
use crate::store::stats;

/// Whether completed job `j` is located at mark `?N` (a condition on `j`).
macro_rules! located {
    ($mark:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM attempts a WHERE a.job_pos = j.pos \
             AND a.lease_token = j.lease_token AND a.outcome = 'succeeded' \
             AND a.finished_at >= ",
            $mark,
            ")"
        )
    };
}

/// The completed jobs located by attempts that finished in `[?1, ?2)`, per queue.
macro_rules! located_between {
    () => {
        "SELECT j.queue, count(*) FROM attempts a INDEXED BY attempts_finished \
         JOIN jobs j ON j.pos = a.job_pos \
         WHERE a.finished_at >= ?1 AND a.finished_at < ?2 AND a.outcome = 'succeeded' \
         AND j.lease_token = a.lease_token AND j.state = 'completed' GROUP BY j.queue"
    };
}

/// See [`located_between!`].
const LOCATED_BETWEEN: &str = located_between!();

/// Where the mark stands.
const READ_MARK: &str = "SELECT jobs_until FROM stats_rolled";

/// The rollup.
const READ_ROLLUP: &str = "SELECT queue, jobs FROM completed_rollup";

/// Moves the mark from `?1` to `?2`, unless another process moved it first.
const ROLL_MARK: &str = "UPDATE stats_rolled SET jobs_until = ?2 WHERE jobs_until = ?1";

/// Adds the completed jobs located in `[?1, ?2)` to the rollup.
const ROLL_UP: &str = concat!(
    "INSERT INTO completed_rollup (queue, jobs) SELECT * FROM (",
    located_between!(),
    ") WHERE true ON CONFLICT (queue) DO UPDATE SET jobs = jobs + excluded.jobs"
);

/// Adds `?2` jobs to queue `?1`'s row of the rollup.
const ADD_TO_QUEUE: &str = "INSERT INTO completed_rollup (queue, jobs) VALUES (?1, ?2) \
     ON CONFLICT (queue) DO UPDATE SET jobs = jobs + excluded.jobs";

/// Takes job `?1` from the rollup if it is completed and not located at mark `?2`.
const UNROLL_JOB: &str = concat!(
    "INSERT INTO completed_rollup (queue, jobs) SELECT j.queue, -1 FROM jobs j \
     WHERE j.id = ?1 AND j.state = 'completed' AND NOT ",
    located!("?2"),
    " ON CONFLICT (queue) DO UPDATE SET jobs = jobs + excluded.jobs"
);

/// Adds the completed jobs after `seq` `?1` that are not located at mark `?2`.
const ROLL_IN_SINCE: &str = concat!(
    "INSERT INTO completed_rollup (queue, jobs) SELECT j.queue, count(*) FROM jobs j \
     WHERE j.seq > ?1 AND j.state = 'completed' AND NOT ",
    located!("?2"),
    " GROUP BY j.queue ON CONFLICT (queue) DO UPDATE SET jobs = jobs + excluded.jobs"
);

/// Whether a deleted job's attempt of lease `?2` (job `pos` `?1`) locates it at
/// mark `?3`.
const IS_LOCATED: &str = "SELECT 1 FROM attempts WHERE job_pos = ?1 AND lease_token = ?2 \
     AND outcome = 'succeeded' AND finished_at >= ?3";

/// The newest job's `seq` (0 for none).
const LAST_SEQ: &str = "SELECT coalesce(max(seq), 0) FROM jobs";

/// Where the mark stands.
pub(super) fn mark(conn: &Connection) -> Result<i64> {
    conn.prepare_cached(READ_MARK)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)
}

/// Completed jobs per queue (no zero rows), in one read transaction's snapshot.
pub(super) fn by_queue(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut found: Vec<(String, i64)> = Vec::new();
    let mut add = |queue: String, n: i64| match found.iter_mut().find(|(q, _)| *q == queue) {
        Some(row) => row.1 += n,
        None => found.push((queue, n)),
    };
    let mut stmt = conn.prepare_cached(READ_ROLLUP).map_err(db_error)?;
    let mut rows = stmt.query([]).map_err(db_error)?;
    while let Some(r) = rows.next().map_err(db_error)? {
        add(r.get(0).map_err(db_error)?, r.get(1).map_err(db_error)?);
    }
    let mark = mark(conn)?;
    let mut stmt = conn.prepare_cached(LOCATED_BETWEEN).map_err(db_error)?;
    let mut rows = stmt.query(params![mark, i64::MAX]).map_err(db_error)?;
    while let Some(r) = rows.next().map_err(db_error)? {
        add(r.get(0).map_err(db_error)?, r.get(1).map_err(db_error)?);
    }
    found.retain(|(_, n)| *n != 0);
    Ok(found)
}

/// Moves the mark forward if it is a step behind `now`, adding what it passes.
pub(super) fn roll_if_due(tx: &Transaction<'_>, now: i64) -> Result<()> {
    let rolled_to = mark(tx)?;
    let Some(target) = stats::jobs_roll_target(rolled_to, now) else {
        return Ok(());
    };
    let moved = tx
        .execute(ROLL_MARK, params![rolled_to, target])
        .map_err(db_error)?;
    if moved == 1 {
        tx.execute(ROLL_UP, params![rolled_to, target])
            .map_err(db_error)?;
    }
    Ok(())
}

/// Whether the mark is a step behind `now`.
pub(super) fn roll_due(conn: &Connection, now: i64) -> Result<bool> {
    Ok(stats::jobs_roll_target(mark(conn)?, now).is_some())
}

/// Before job `id` leaves the completed state (retry): takes it from the rollup if
/// the rollup holds it.
pub(super) fn unroll_job(tx: &Transaction<'_>, id: &str, mark: i64) -> Result<()> {
    tx.prepare_cached(UNROLL_JOB)
        .and_then(|mut s| s.execute(params![id, mark]))
        .map_err(db_error)?;
    Ok(())
}

/// The newest job's `seq` before an import, for [`roll_in_since`].
pub(super) fn last_seq(tx: &Transaction<'_>) -> Result<i64> {
    tx.query_row(LAST_SEQ, [], |r| r.get(0)).map_err(db_error)
}

/// After an import (whose jobs all come after `seq` `last`, the write transaction
/// keeping other writers out): adds the imported completed jobs that are not
/// located.
pub(super) fn roll_in_since(tx: &Transaction<'_>, last: i64) -> Result<()> {
    let mark = mark(tx)?;
    tx.execute(ROLL_IN_SINCE, params![last, mark])
        .map_err(db_error)?;
    Ok(())
}

/// The deleted completed jobs the rollup held, per queue, for `clean`: noted
/// before each job's attempts are deleted, taken away at the end.
pub(super) struct Unrolled {
    mark: i64,
    queues: Vec<(String, i64)>,
}

impl Unrolled {
    pub(super) fn new(tx: &Transaction<'_>) -> Result<Self> {
        Ok(Unrolled {
            mark: mark(tx)?,
            queues: Vec::new(),
        })
    }

    /// Notes a deleted job (`pos`, `queue`, state, lease) before its attempts go.
    pub(super) fn note(
        &mut self,
        tx: &Transaction<'_>,
        pos: i64,
        queue: &str,
        state: &str,
        lease_token: i64,
    ) -> Result<()> {
        if state != "completed" {
            return Ok(());
        }
        let located = tx
            .prepare_cached(IS_LOCATED)
            .and_then(|mut s| {
                s.query_row(params![pos, lease_token, self.mark], |_| Ok(()))
                    .optional()
            })
            .map_err(db_error)?
            .is_some();
        if !located {
            match self.queues.iter_mut().find(|(q, _)| q == queue) {
                Some(row) => row.1 += 1,
                None => self.queues.push((queue.to_owned(), 1)),
            }
        }
        Ok(())
    }

    /// Takes the noted jobs from the rollup.
    pub(super) fn finish(self, tx: &Transaction<'_>) -> Result<()> {
        let mut stmt = tx.prepare_cached(ADD_TO_QUEUE).map_err(db_error)?;
        for (queue, n) in self.queues {
            stmt.execute(params![queue, -n]).map_err(db_error)?;
        }
        Ok(())
    }
}
