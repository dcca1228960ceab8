//! What users do to jobs besides enqueueing them: `retry` finished jobs, `cancel`
//! unfinished ones and `clean` old finished ones away.
//!
//! Invariants, as on SQLite: each operation locks the jobs it decides about
//! (`FOR UPDATE`) and decides with [`crate::job`] ([`job::after_retry`],
//! [`job::plan_cancel`]) on them as locked, so it is all or nothing; every write
//! re-checks the state it decided on; `clean` deletes only finished jobs, with their
//! attempts and output chunks, in one statement. Retry and cancel NOTIFY, so workers
//! on every host see new work or a cancel request at once.

use std::collections::HashMap;

use postgres::Transaction;

use super::listen::notify;
use super::{Db, Step, completed, is_unique_violation, millis, schedule};
use crate::job::{self, Cancel, Job, JobState, Transition};
use crate::store::rows::{job_columns, job_from_row};
use crate::store::{CleanRequest, Cleaned, control};

/// Locks the jobs whose ids are in `$1`.
const LOCK_JOBS_BY_ID: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE id = ANY($1) FOR UPDATE"
);

/// Locks every job in one of the states `$1`, in enqueue order.
const LOCK_JOBS_IN_STATES: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE state = ANY($1) ORDER BY seq FOR UPDATE"
);

/// Applies each `retry` (or `dlq retry`) transition (arrays `$1`..`$7`) to jobs still
/// finished.
const RETRY_FINISHED: &str = "UPDATE jobs j SET state = t.state, attempts = t.attempts, \
        interruptions = t.interruptions, next_run_at = now_ms() + t.run_after, \
        exit_code = t.exit_code, last_error = t.last_error, updated_at = now_ms(), \
        scheduled = t.run_after > 0, blocked_by = (SELECT count(*) \
            FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
            WHERE d.job_id = j.id AND a.state <> 'completed') \
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
        $6::bigint[], $7::text[]) \
        AS t(id, state, attempts, interruptions, run_after, exit_code, last_error) \
    WHERE j.id = t.id AND j.state IN ('completed', 'dead', 'cancelled')";

/// The unfinished job other than `$2` that holds unique key `$1`.
const FIND_UNIQUE_HOLDER: &str = "SELECT id FROM jobs WHERE unique_key = $1 \
    AND unique_key IS NOT NULL AND state IN ('pending', 'processing', 'failed') AND id <> $2";

/// Cancels each job (arrays `$1`..`$6`) still waiting.
/// Cancels each job (arrays `$1`..`$6`) still waiting; returns those that other
/// jobs run after.
const CANCEL_WAITING: &str = "UPDATE jobs j SET state = t.state, attempts = t.attempts, \
        interruptions = t.interruptions, exit_code = t.exit_code, \
        last_error = t.last_error, finished_at = now_ms(), updated_at = now_ms(), \
        blocked_by = 0, scheduled = false \
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
        $6::text[]) AS t(id, state, attempts, interruptions, exit_code, last_error) \
    WHERE j.id = t.id AND j.state IN ('pending', 'failed') \
    RETURNING j.id, j.has_dependents";

/// Asks the workers running jobs `$1` (under leases `$2`) to stop them.
const REQUEST_CANCEL: &str = "UPDATE jobs j SET cancel_requested = true, updated_at = now_ms() \
    FROM unnest($1::text[], $2::bigint[]) AS r(id, token) \
    WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'processing'";

/// Deletes up to `$3` (NULL: all) jobs in states `$1` that finished at least `$2` ms
/// ago, oldest first, with their attempts and output chunks; returns how many. In
/// creation order, as on SQLite; SKIP LOCKED lets two cleaners pass each other, and
/// the state is checked again on the row deleted. The deleted completed jobs that
/// `completed_rollup` counts (not located at mark `$4`, see [`completed`]) leave it:
/// every part of the statement sees the attempts as they were before it.
const DELETE_FINISHED_JOBS: &str = "WITH gone AS ( \
        DELETE FROM jobs WHERE seq IN ( \
            SELECT seq FROM jobs WHERE state = ANY($1) \
            AND coalesce(finished_at, updated_at) <= now_ms() - $2 \
            ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) \
        AND state = ANY($1) RETURNING id, seq, queue, state, lease_token \
    ), history AS ( \
        DELETE FROM attempts a USING gone g WHERE a.job_seq = g.seq \
    ), chunks AS ( \
        DELETE FROM output_chunks c USING gone g WHERE c.job_id = g.id \
    ), unrolled AS ( \
        INSERT INTO completed_rollup AS r (queue, jobs) \
        SELECT g.queue, -count(*) FROM gone g WHERE g.state = 'completed' \
        AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_seq = g.seq \
            AND a.lease_token = g.lease_token AND a.outcome = 'succeeded' \
            AND a.finished_at >= $4) \
        GROUP BY g.queue ON CONFLICT (queue) DO UPDATE SET jobs = r.jobs + excluded.jobs \
    ) SELECT count(*) FROM gone";

/// Deletes the rows of workers that ended over `$1` ms ago.
const FORGET_ENDED_WORKERS: &str = "DELETE FROM workers WHERE ended_at < now_ms() - $1";

/// `retry` and `dlq retry`: starts the jobs `ids` (or every job in `states`) over,
/// each as `rule` decides, all or nothing, and wakes idle workers.
pub(super) fn retry_in(
    db: &mut Db<'_, Transaction<'_>>,
    ids: Option<&[String]>,
    states: &[JobState],
    rule: control::RetryRule,
    channel: &str,
) -> Step<Vec<String>> {
    let mut decided: Vec<(String, Transition)> = Vec::new();
    // The unique keys of the jobs to retry: another unfinished job may hold one.
    let mut keys: Vec<(String, String)> = Vec::new();
    match ids {
        Some(ids) => {
            let jobs = lock_by_id(db, ids)?;
            for id in ids {
                let found = jobs.get(id.as_str());
                decided.push((id.clone(), rule(id, found)?));
                if let Some(key) = found.and_then(|j| j.unique_key.clone()) {
                    keys.push((id.clone(), key));
                }
            }
        }
        None => {
            let states: Vec<&str> = control::finished_states(states)?
                .into_iter()
                .map(JobState::as_str)
                .collect();
            for row in db.query(LOCK_JOBS_IN_STATES, &[&states])? {
                let found = job_from_row(&row)?;
                let transition = rule(&found.id, Some(&found))?;
                if let Some(key) = found.unique_key.clone() {
                    keys.push((found.id.clone(), key));
                }
                decided.push((found.id, transition));
            }
        }
    }
    if decided.is_empty() {
        return Ok(Vec::new());
    }
    for (id, key) in &keys {
        if let Some(row) = db.query_opt(FIND_UNIQUE_HOLDER, &[key, id])? {
            let holder: String = row.try_get(0)?;
            return Err(control::unique_key_taken(id, Some(&holder)));
        }
    }
    let ids: Vec<&str> = decided.iter().map(|(id, _)| id.as_str()).collect();
    let states: Vec<&str> = decided.iter().map(|(_, t)| t.state.as_str()).collect();
    let attempts: Vec<i64> = decided.iter().map(|(_, t)| t.attempts).collect();
    let interruptions: Vec<i64> = decided.iter().map(|(_, t)| t.interruptions).collect();
    let run_after: Vec<i64> = decided.iter().map(|(_, t)| millis(t.run_after)).collect();
    let exit_codes: Vec<Option<i64>> = decided.iter().map(|(_, t)| t.exit_code).collect();
    let last_errors: Vec<Option<&str>> = decided
        .iter()
        .map(|(_, t)| t.last_error.as_deref())
        .collect();
    // Completed jobs leave the count of completed_rollup, if they are in it.
    completed::unroll_ids(db, &ids)?;
    let retried = db.execute(
        RETRY_FINISHED,
        &[
            &ids,
            &states,
            &attempts,
            &interruptions,
            &run_after,
            &exit_codes,
            &last_errors,
        ],
    );
    match retried {
        Err(e) if is_unique_violation(&e) => {
            let id = keys.first().map_or("", |(id, _)| id.as_str());
            return Err(control::unique_key_taken(id, None));
        }
        other => other?,
    };
    notify(db, channel)?;
    Ok(decided.into_iter().map(|(id, _)| id).collect())
}

/// `cancel`: all of `ids` or none. Waiting jobs end at once; running ones are
/// marked for their worker, and NOTIFY wakes workers everywhere to look.
pub(super) fn cancel_in(
    db: &mut Db<'_, Transaction<'_>>,
    ids: &[String],
    channel: &str,
) -> Step<Vec<(String, Cancel)>> {
    let jobs = lock_by_id(db, ids)?;
    let plan = job::plan_cancel(ids, |id| jobs.get(id))?;
    let now: Vec<(&str, &Transition)> = plan
        .iter()
        .filter_map(|(id, c)| match c {
            Cancel::Now(t) => Some((id.as_str(), t)),
            Cancel::Requested { .. } => None,
        })
        .collect();
    if !now.is_empty() {
        let ids: Vec<&str> = now.iter().map(|(id, _)| *id).collect();
        let states: Vec<&str> = now.iter().map(|(_, t)| t.state.as_str()).collect();
        let attempts: Vec<i64> = now.iter().map(|(_, t)| t.attempts).collect();
        let interruptions: Vec<i64> = now.iter().map(|(_, t)| t.interruptions).collect();
        let exit_codes: Vec<Option<i64>> = now.iter().map(|(_, t)| t.exit_code).collect();
        let last_errors: Vec<Option<&str>> =
            now.iter().map(|(_, t)| t.last_error.as_deref()).collect();
        let rows = db.query(
            CANCEL_WAITING,
            &[
                &ids,
                &states,
                &attempts,
                &interruptions,
                &exit_codes,
                &last_errors,
            ],
        )?;
        for row in &rows {
            if row.try_get::<_, bool>(1)? {
                let id: String = row.try_get(0)?;
                schedule::settle(db, &id, JobState::Cancelled)?;
            }
        }
    }
    let (running, tokens): (Vec<&str>, Vec<i64>) = plan
        .iter()
        .filter_map(|(id, c)| match c {
            Cancel::Requested { lease_token } => Some((id.as_str(), *lease_token)),
            Cancel::Now(_) => None,
        })
        .unzip();
    if !running.is_empty() {
        db.execute(REQUEST_CANCEL, &[&running, &tokens])?;
    }
    if !plan.is_empty() {
        notify(db, channel)?;
    }
    Ok(plan)
}

/// `clean` (and retention): deletes finished jobs with their history, and worker
/// rows that ended over a day ago, in one transaction.
pub(super) fn clean_in(db: &mut Db<'_, Transaction<'_>>, request: &CleanRequest) -> Step<Cleaned> {
    let states: Vec<&str> = control::finished_states(&request.states)?
        .into_iter()
        .map(JobState::as_str)
        .collect();
    let older_than = request.older_than.map_or(0, millis);
    let limit = request.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let mark = completed::lock_mark(db)?;
    let row = db.query_one(DELETE_FINISHED_JOBS, &[&states, &older_than, &limit, &mark])?;
    let jobs: i64 = row.try_get(0)?;
    let kept = millis(control::ENDED_WORKER_KEPT);
    let workers = db.execute(FORGET_ENDED_WORKERS, &[&kept])?;
    Ok(Cleaned {
        jobs: u64::try_from(jobs).unwrap_or(0),
        workers,
    })
}

/// The jobs among `ids` that exist, locked, by id.
fn lock_by_id(db: &mut Db<'_, Transaction<'_>>, ids: &[String]) -> Step<HashMap<String, Job>> {
    let rows = db.query(LOCK_JOBS_BY_ID, &[&ids])?;
    rows.iter()
        .map(|row| job_from_row(row).map(|j| (j.id.clone(), j)))
        .collect()
}
