//! Jobs per queue and state without reading the jobs table (issue 13): the
//! unfinished, dead and cancelled jobs from their partial indexes, completed jobs
//! from `completed_rollup` plus the *located* ones (see migration 0006 and
//! [`crate::store::stats`]). `metrics`, `status` and the dashboard's overview and
//! queues all count with [`job_counts`].
//!
//! Invariants: `completed_rollup` holds, per queue, the completed jobs that are not
//! located at the mark `stats_rolled.jobs_until`. Claims and finishes never touch
//! it (a job completed by a worker is located: its attempt finished at the
//! transaction's `now`, after the mark, which stays [`stats::ROLL_LAG_MS`] behind the
//! clock). Everything else that changes the set keeps it: [`roll_if_due`] adds what
//! the mark passes, `retry` and `clean` take away the unlocated completed jobs they
//! change ([`unroll_ids`], `control::DELETE_FINISHED_JOBS`), `import` adds the ones it
//! brings ([`roll_in_ids`]). Those writers first take the mark's row `FOR SHARE`
//! ([`lock_mark`]) and the rollup moves the mark with an `UPDATE` of that row before
//! counting in a later statement (READ COMMITTED: a new snapshot), so each of them
//! either sees the other's change or is seen by it, never neither.

use postgres::{GenericClient, Transaction};

use super::{Db, Step};
use crate::store::stats;

/// Whether completed job `j` is located at mark `$N` (a condition on `j`).
macro_rules! located {
    ($mark:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM attempts a WHERE a.job_seq = j.seq \
             AND a.lease_token = j.lease_token AND a.outcome = 'succeeded' \
             AND a.finished_at >= ",
            $mark,
            ")"
        )
    };
}

/// The completed jobs located by attempts that finished in `[$1, $2)`, per queue.
macro_rules! located_between {
    () => {
        "SELECT j.queue, count(*) FROM attempts a \
         JOIN jobs j ON j.seq = a.job_seq AND j.lease_token = a.lease_token \
         WHERE a.finished_at >= $1 AND a.finished_at < $2 AND a.outcome = 'succeeded' \
         AND j.state = 'completed' GROUP BY j.queue"
    };
}

/// Every job per queue and state, with since when the oldest claimable job of each
/// row has been claimable (NULL for rows of jobs that are not). Each branch walks
/// one partial index; the last two are the completed jobs: the rollup, then those
/// located at mark `$1`. The mark is a parameter (not a subquery) so the planner
/// knows how few attempts follow it, and each attempt finds its job through a
/// subquery on `jobs_pkey` rather than a join, which the planner could turn into a
/// hash join over the whole table. Run it in the snapshot the mark was read in.
const JOB_COUNTS: &str = "SELECT queue, state, count(*), min(next_run_at) FROM jobs \
     WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND NOT scheduled \
     GROUP BY queue, state \
     UNION ALL SELECT queue, state, count(*), min(next_run_at) FILTER (WHERE next_run_at <= now_ms()) \
     FROM jobs WHERE scheduled AND state IN ('pending', 'failed') AND blocked_by = 0 \
     GROUP BY queue, state \
     UNION ALL SELECT queue, state, count(*), NULL FROM jobs \
     WHERE blocked_by > 0 AND state IN ('pending', 'failed') GROUP BY queue, state \
     UNION ALL SELECT queue, 'processing', count(*), NULL FROM jobs \
     WHERE state = 'processing' GROUP BY queue \
     UNION ALL SELECT queue, 'dead', count(*), NULL FROM jobs WHERE state = 'dead' GROUP BY queue \
     UNION ALL SELECT queue, 'cancelled', count(*), NULL FROM jobs \
     WHERE state = 'cancelled' GROUP BY queue \
     UNION ALL SELECT queue, 'completed', jobs, NULL FROM completed_rollup \
     UNION ALL SELECT queue, 'completed', count(*), NULL FROM ( \
         SELECT (SELECT j.queue FROM jobs j WHERE j.seq = a.job_seq \
             AND j.lease_token = a.lease_token AND j.state = 'completed') AS queue \
         FROM attempts a WHERE a.finished_at >= $1 AND a.outcome = 'succeeded') AS located \
     WHERE queue IS NOT NULL GROUP BY queue";

/// The mark, locked against a concurrent roll until the transaction ends.
const LOCK_MARK: &str = "SELECT jobs_until FROM stats_rolled FOR SHARE";

/// Where the mark stands.
const READ_MARK: &str = "SELECT jobs_until FROM stats_rolled";

/// Moves the mark from `$1` to `$2`, unless another process moved it first.
const ROLL_MARK: &str = "UPDATE stats_rolled SET jobs_until = $2 WHERE jobs_until = $1";

/// Adds the completed jobs located in `[$1, $2)` to the rollup.
const ROLL_UP: &str = concat!(
    "INSERT INTO completed_rollup AS r (queue, jobs) SELECT * FROM (",
    located_between!(),
    ") AS rows ON CONFLICT (queue) DO UPDATE SET jobs = r.jobs + excluded.jobs"
);

/// Adds `$3` times the unlocated (at mark `$2`) completed jobs among ids `$1` to
/// the rollup.
const ADD_UNLOCATED: &str = concat!(
    "INSERT INTO completed_rollup AS r (queue, jobs) \
     SELECT j.queue, $3::bigint * count(*) FROM jobs j \
     WHERE j.id = ANY($1) AND j.state = 'completed' AND NOT ",
    located!("$2"),
    " GROUP BY j.queue ON CONFLICT (queue) DO UPDATE SET jobs = r.jobs + excluded.jobs"
);

/// Jobs per queue and state as `(queue, state as stored, jobs)` (no zero rows), and
/// `(queue, since)` for the longest-waiting claimable job of each queue.
pub(super) type Counted = (Vec<(String, String, i64)>, Vec<(String, i64)>);

/// Every job per queue and state, and the oldest claimable job of each queue. Run
/// it in one snapshot ([`super::PgStore::snapshot`]): it reads the mark, then counts
/// at that mark.
pub(super) fn job_counts<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Counted> {
    let mark: i64 = db.query_one(READ_MARK, &[])?.try_get(0)?;
    let mut jobs = Vec::new();
    let mut oldest = Vec::new();
    for r in db.query(JOB_COUNTS, &[&mark])? {
        let queue: String = r.try_get(0)?;
        let state: String = r.try_get(1)?;
        stats::note_oldest(&mut oldest, &queue, r.try_get(3)?);
        stats::add_jobs(&mut jobs, queue, &state, r.try_get(2)?);
    }
    jobs.retain(|(_, _, n)| *n != 0);
    oldest.sort();
    Ok((jobs, oldest))
}

/// Takes the mark's row `FOR SHARE` (a roll waits until this transaction ends) and
/// returns the mark.
pub(super) fn lock_mark(db: &mut Db<'_, Transaction<'_>>) -> Step<i64> {
    Ok(db.query_one(LOCK_MARK, &[])?.try_get(0)?)
}

/// Before jobs `ids` leave the completed state (retry): takes from the rollup the
/// ones it holds.
pub(super) fn unroll_ids(db: &mut Db<'_, Transaction<'_>>, ids: &[&str]) -> Step<()> {
    let mark = lock_mark(db)?;
    db.execute(ADD_UNLOCATED, &[&ids, &mark, &-1i64])?;
    Ok(())
}

/// After jobs `ids` arrived (import): adds to the rollup the completed ones that
/// are not located.
pub(super) fn roll_in_ids(db: &mut Db<'_, Transaction<'_>>, ids: &[&str]) -> Step<()> {
    let mark = lock_mark(db)?;
    db.execute(ADD_UNLOCATED, &[&ids, &mark, &1i64])?;
    Ok(())
}

/// Moves the mark forward if it is a step behind `now`, adding what it passes.
pub(super) fn roll_if_due(db: &mut Db<'_, Transaction<'_>>, now: i64) -> Step<()> {
    let rolled_to: i64 = db.query_one(READ_MARK, &[])?.try_get(0)?;
    let Some(target) = stats::jobs_roll_target(rolled_to, now) else {
        return Ok(());
    };
    if db.execute(ROLL_MARK, &[&rolled_to, &target])? == 1 {
        db.execute(ROLL_UP, &[&rolled_to, &target])?;
    }
    Ok(())
}
