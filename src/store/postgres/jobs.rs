//! The jobs table outside a worker's round trip: enqueue, reading jobs and their
//! attempts, listing and counting.
//!
//! Invariants: a batch of jobs takes `seq`s in the order given, and is inserted in
//! that order too unless its priorities are mixed: then in the order it will run
//! (`crate::store::layout`), so that claims and finishes touch few heap pages; in
//! array-sized chunks of [`ENQUEUE_CHUNK`], so 100k jobs are a few statements, not
//! 100k round trips; a duplicate id fails the whole batch with that id's name; waiting
//! jobs are listed in the order they will run, as on SQLite.

use postgres::types::ToSql;
use postgres::{GenericClient, Transaction};

use super::listen::{notify, notify_one_job};
use super::{Db, Step, driver_error, duplicate_id, is_unique_violation, millis, read_settings};
use crate::config::Config;
use crate::error::StoreError;
use crate::job::options::{Admission, Start, admission};
use crate::job::{Job, JobState, NewJob};
use crate::store::layout::BatchLayout;
use crate::store::listing::{Dialect, listing_sql};
use crate::store::rows::{
    JOB_COLUMN_COUNT, attempt_columns, attempt_from_row, job_columns, job_from_row,
};
use crate::store::rows::{after_from_lines, env_to_text};
use crate::store::{AttemptRecord, Counts, Enqueued, JobListing, JobOrder};

/// The text of [`INSERT_JOBS`] and [`INSERT_JOBS_AT`]: the second adds a `seq`
/// column (its name, the override clause, the value, the array, its name in `t`).
macro_rules! insert_jobs {
    ($col:literal, $overriding:literal, $value:literal, $array:literal, $name:literal) => {
        concat!(
            "INSERT INTO jobs (id, command, cwd, state, max_retries, \
        created_at, updated_at, next_run_at, timeout_ms, priority, queue, run_at, env, \
        unique_key, blocked_by, scheduled, finished_at, last_error",
            $col,
            ") ",
            $overriding,
            " SELECT t.id, t.command, t.cwd, t.state, t.max_retries, now_ms(), now_ms(), \
        coalesce(t.run_at, now_ms()), t.timeout_ms, t.priority, t.queue, t.run_at, t.env, \
        t.unique_key, t.blocked_by, t.state = 'pending' AND coalesce(t.run_at > now_ms(), false), \
        CASE WHEN t.state = 'cancelled' THEN now_ms() END, t.last_error",
            $value,
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
        $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::bigint[], \
        $12::text[], $13::text[]",
            $array,
            ") WITH ORDINALITY AS t(id, command, cwd, max_retries, timeout_ms, priority, queue, \
        run_at, env, unique_key, blocked_by, state, last_error",
            $name,
            ", ord) ORDER BY t.ord \
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL \
        AND state IN ('pending', 'processing', 'failed') DO NOTHING \
    RETURNING id, now_ms()"
        )
    };
}

/// Jobs per INSERT statement when enqueuing (and importing): large batches go in
/// array-sized chunks, so 100k jobs are a few statements, not 100k round trips.
pub(super) const ENQUEUE_CHUNK: usize = 5000;

/// Inserts jobs in array order (`$1` ids, `$2` commands, `$3` directories, `$4`
/// retry limits, `$5` timeouts, `$6` priorities, `$7` queues, `$8` run_at (NULL:
/// now), `$9` env, `$10` unique keys, `$11` blocked_by, `$12` states, `$13` last
/// errors), each as its admission decided; a job whose unique key an unfinished
/// job (or an earlier job of the batch) holds is skipped. Returns the ids inserted
/// with the database time used as their `created_at`.
const INSERT_JOBS: &str = insert_jobs!("", "", "", "", "");

/// [`INSERT_JOBS`] with each job's `seq` given (`$14`): a batch inserted in the
/// order it will run (`crate::store::layout`) keeps the `seq`s of its input order,
/// taken by [`RESERVE_SEQS`].
const INSERT_JOBS_AT: &str = insert_jobs!(
    ", seq",
    "OVERRIDING SYSTEM VALUE",
    ", t.seq",
    ", $14::bigint[]",
    ", seq"
);

/// `$1` new `seq`s from the identity sequence, for [`INSERT_JOBS_AT`].
const RESERVE_SEQS: &str =
    "SELECT nextval(pg_get_serial_sequence('jobs', 'seq')) FROM generate_series(1, $1::bigint)";

/// The ids a listed job runs after, one per line (NULL: none), as the column after
/// [`job_columns!`].
macro_rules! after_ids {
    () => {
        "(SELECT string_agg(d.after_id, E'\\n' ORDER BY d.after_id) \
         FROM job_dependencies d WHERE d.job_id = jobs.id)"
    };
}

/// The unfinished job holding unique key `$1`.
const FIND_UNIQUE: &str = "SELECT id FROM jobs WHERE unique_key = $1 \
    AND unique_key IS NOT NULL AND state IN ('pending', 'processing', 'failed')";

/// Marks the jobs `$1` that a new job runs after, locking them until the enqueue
/// commits (so none can finish unseen in between), and returns their states.
const MARK_HAS_DEPENDENTS: &str =
    "UPDATE jobs SET has_dependents = true WHERE id = ANY($1) RETURNING id, state";

/// Records that job `$1` runs after each of the jobs `$2`.
const INSERT_DEPENDENCIES: &str = "INSERT INTO job_dependencies (job_id, after_id) \
    SELECT $1, a FROM unnest($2::text[]) AS a";

/// The jobs one job runs after, by id.
const READ_AFTER: &str =
    "SELECT after_id FROM job_dependencies WHERE job_id = $1 ORDER BY after_id";

/// The database's clock, for an enqueue of no jobs.
const READ_NOW: &str = "SELECT now_ms()";

/// Job `$1`, followed by the output tail of its latest attempt.
pub(super) const READ_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", (SELECT output_tail FROM attempts a WHERE a.job_seq = j.seq \
     ORDER BY a.lease_token DESC LIMIT 1) FROM jobs j WHERE id = $1"
);

/// The attempts of job `$1`, oldest first: attempts are keyed by the job's `seq`.
pub(super) const READ_ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE job_seq = (SELECT seq FROM jobs WHERE id = $1) ORDER BY lease_token"
);

/// Up to `$2` jobs waiting in state `$1` (`pending` or `failed`), in the order they
/// will run: ready ones (run order), then those waiting for their time (soonest
/// first), then those waiting for other jobs (enqueue order, as on SQLite's
/// `jobs_blocked`; conformance `waiting_jobs_list_in_one_order_on_every_store`).
const LIST_WAITING: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs WHERE state IN ('pending', 'failed') AND state = $1 \
     ORDER BY CASE WHEN blocked_by > 0 THEN 2 WHEN scheduled THEN 1 ELSE 0 END, \
     CASE WHEN blocked_by = 0 AND NOT scheduled THEN priority ELSE 0 END DESC, \
     CASE WHEN blocked_by > 0 THEN 0 ELSE next_run_at END, seq LIMIT $2"
);

/// Up to `$2` jobs in state `$1`, in enqueue order.
const LIST_IN_STATE: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs WHERE state = $1 ORDER BY seq LIMIT $2"
);

/// Up to `$1` jobs, in enqueue order.
const LIST_ALL: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    after_ids!(),
    " FROM jobs ORDER BY seq LIMIT $1"
);

/// The database's clock and when the longest-waiting pending job became due.
const READ_NOW_AND_OLDEST_PENDING: &str = "SELECT now_ms(), (SELECT min(next_run_at) \
    FROM jobs WHERE state = 'pending' AND blocked_by = 0 AND NOT scheduled)";

/// The body of `enqueue`, in one transaction: inserts the jobs in order (runs of
/// jobs without `after` as array chunks, each job with `after` alone, after
/// locking the jobs it names), then wakes idle workers.
pub(super) fn enqueue_in(
    db: &mut Db<'_, Transaction<'_>>,
    jobs: &[NewJob],
    channel: &str,
) -> Step<Enqueued> {
    let defaults = Config::from_stored(&read_settings(db)?);
    // now_ms() is the transaction's start: the same for every statement below. A
    // `--delay` needs it here (admission turns it into a time); otherwise the
    // insert reports it, and enqueue costs no extra trip to the server.
    let mut now: Option<i64> = None;
    if jobs.iter().any(|j| matches!(j.start, Start::After(_))) {
        now = Some(db.query_one(READ_NOW, &[])?.try_get(0)?);
    }
    // Only a delay's run_at depends on the clock given to admission, so without
    // one any value will do.
    let admit_at = now.unwrap_or(0);
    // A batch of mixed priorities goes into the heap in the order it will run
    // (crate::store::layout), each job with the seq of its place in the input:
    // taken from the sequence up front, in ascending order.
    let layout = BatchLayout::of(jobs);
    let mut seqs: Vec<i64> = Vec::new();
    if layout.reordered {
        let count = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
        for row in db.query(RESERVE_SEQS, &[&count])? {
            seqs.push(row.try_get(0)?);
        }
        seqs.sort_unstable();
    }
    let seq_of = |i: usize| seqs.get(i).copied();
    let mut existing = vec![None; jobs.len()];
    let mut unknown = Vec::new();
    let mut simple: Vec<ToInsert<'_>> = Vec::new();
    for &i in &layout.order {
        let job = &jobs[i];
        if layout.same_key_as[i].is_some() {
            continue;
        }
        if job.after.is_empty() {
            simple.push(ToInsert {
                index: i,
                job,
                admission: admission(job, admit_at, &[]),
                seq: seq_of(i),
            });
            if simple.len() == ENQUEUE_CHUNK {
                insert_jobs(db, &simple, &defaults, &mut now, &mut existing)?;
                simple.clear();
            }
            continue;
        }
        insert_jobs(db, &simple, &defaults, &mut now, &mut existing)?;
        simple.clear();
        let rows = db.query(MARK_HAS_DEPENDENTS, &[&job.after])?;
        let mut states: Vec<(String, JobState)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let state: &str = row.try_get(1)?;
            // A state this release does not know counts as unfinished.
            states.push((row.try_get(0)?, state.parse().unwrap_or(JobState::Pending)));
        }
        unknown.extend(
            job.after
                .iter()
                .filter(|id| !states.iter().any(|(found, _)| found == *id))
                .cloned(),
        );
        let waits: Vec<(&str, JobState)> = states.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let one = ToInsert {
            index: i,
            job,
            admission: admission(job, admit_at, &waits),
            seq: seq_of(i),
        };
        insert_jobs(db, &[one], &defaults, &mut now, &mut existing)?;
        if existing[i].is_none() {
            db.execute(INSERT_DEPENDENCIES, &[&job.id, &job.after])?;
        }
    }
    insert_jobs(db, &simple, &defaults, &mut now, &mut existing)?;
    layout.share_keys(jobs, &mut existing);
    if !unknown.is_empty() {
        return Err(StoreError::UnknownAfter(unknown));
    }
    // One job wakes only the duty holders; more wake every process, as each may
    // take some (DECISIONS §26).
    if jobs.len() == 1 {
        notify_one_job(db, channel)?;
    } else if !jobs.is_empty() {
        notify(db, channel)?;
    }
    let created_at = match now {
        Some(now) => now,
        None => db.query_one(READ_NOW, &[])?.try_get(0)?,
    };
    Ok(Enqueued {
        created_at,
        existing,
    })
}

/// One job of a batch on its way into the table.
struct ToInsert<'a> {
    /// Its place in the batch as given, where its outcome goes.
    index: usize,
    job: &'a NewJob,
    admission: Admission,
    /// `None`: the sequence's next (all jobs of one insert alike).
    seq: Option<i64>,
}

/// Inserts jobs in one statement, in the given order (`seq` follows it, unless
/// given); a job without its own retry limit or timeout gets the one in
/// `defaults`. Sets `existing[index]` of each job skipped to the unfinished job
/// holding its unique key, and `now` to the database time the insert used, if it
/// inserted any.
fn insert_jobs(
    db: &mut Db<'_, Transaction<'_>>,
    batch: &[ToInsert<'_>],
    defaults: &Config,
    now: &mut Option<i64>,
    existing: &mut [Option<String>],
) -> Step<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let jobs: Vec<(&NewJob, &Admission)> = batch.iter().map(|b| (b.job, &b.admission)).collect();
    let ids: Vec<&str> = jobs.iter().map(|(j, _)| j.id.as_str()).collect();
    let commands: Vec<&str> = jobs.iter().map(|(j, _)| j.command.as_str()).collect();
    let cwds: Vec<&str> = jobs.iter().map(|(j, _)| j.cwd.as_str()).collect();
    let retries: Vec<i64> = jobs
        .iter()
        .map(|(j, _)| j.max_retries.unwrap_or(defaults.max_retries))
        .collect();
    let default_timeout = defaults.job_timeout.map(millis);
    let timeouts: Vec<Option<i64>> = jobs
        .iter()
        .map(|(j, _)| j.timeout_ms.or(default_timeout))
        .collect();
    let priorities: Vec<i64> = jobs.iter().map(|(j, _)| j.priority).collect();
    let queues: Vec<&str> = jobs.iter().map(|(j, _)| j.queue.as_str()).collect();
    let run_ats: Vec<Option<i64>> = jobs.iter().map(|(_, a)| a.run_at).collect();
    let envs: Vec<Option<String>> = jobs
        .iter()
        .map(|(j, _)| env_to_text(j.env.as_ref()))
        .collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|(j, _)| j.unique_key.as_deref()).collect();
    let blocked: Vec<i64> = jobs.iter().map(|(_, a)| a.blocked_by).collect();
    let states: Vec<&str> = jobs.iter().map(|(_, a)| a.state.as_str()).collect();
    let errors: Vec<Option<&str>> = jobs.iter().map(|(_, a)| a.last_error.as_deref()).collect();
    // All of a batch's seqs are given, or none.
    let seqs: Option<Vec<i64>> = batch.iter().map(|b| b.seq).collect();
    let (sql, params) = match &seqs {
        Some(_) => (INSERT_JOBS_AT, 14),
        None => (INSERT_JOBS, 13),
    };
    let seqs = seqs.unwrap_or_default();
    let all: [&(dyn ToSql + Sync); 14] = [
        &ids,
        &commands,
        &cwds,
        &retries,
        &timeouts,
        &priorities,
        &queues,
        &run_ats,
        &envs,
        &keys,
        &blocked,
        &states,
        &errors,
        &seqs,
    ];
    let result = db.query(sql, &all[..params]);
    let inserted: Vec<String> = match result {
        Ok(rows) => {
            if let Some(row) = rows.first() {
                *now = Some(row.try_get(1)?);
            }
            rows.iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?
        }
        Err(e) if is_unique_violation(&e) => {
            let id = driver_error(&e)
                .and_then(duplicate_id)
                .unwrap_or_else(|| ids.first().copied().unwrap_or_default().to_owned());
            return Err(StoreError::DuplicateId(id));
        }
        Err(e) => return Err(e),
    };
    if inserted.len() == batch.len() {
        return Ok(());
    }
    for one in batch {
        if inserted.contains(&one.job.id) {
            continue;
        }
        let key = one.job.unique_key.as_deref().unwrap_or_default();
        if let Some(row) = db.query_opt(FIND_UNIQUE, &[&key])? {
            existing[one.index] = Some(row.try_get(0)?);
        }
    }
    Ok(())
}

/// A job with the output tail of its latest attempt, if it exists.
pub(super) fn read_job<C: GenericClient>(db: &mut Db<'_, C>, id: &str) -> Step<Option<Job>> {
    let row = db.query_opt(READ_JOB, &[&id])?;
    let Some(row) = row else { return Ok(None) };
    let mut job = job_from_row(&row)?;
    job.output_tail = row.try_get(JOB_COLUMN_COUNT)?;
    job.after = read_after(db, id)?;
    Ok(Some(job))
}

/// The jobs `id` runs after, by id (the same order on every store).
pub(super) fn read_after<C: GenericClient>(db: &mut Db<'_, C>, id: &str) -> Step<Vec<String>> {
    let rows = db.query(READ_AFTER, &[&id])?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub(super) fn read_attempts<C: GenericClient>(
    db: &mut Db<'_, C>,
    id: &str,
) -> Step<Vec<AttemptRecord>> {
    let rows = db.query(READ_ATTEMPTS, &[&id])?;
    rows.iter().map(|r| attempt_from_row(r, 0)).collect()
}

pub(super) fn list_jobs<C: GenericClient>(
    db: &mut Db<'_, C>,
    state: Option<JobState>,
    limit: Option<i64>,
) -> Step<Vec<Job>> {
    let rows = match state {
        // Waiting jobs are listed in the order they will run, as on SQLite.
        Some(state @ (JobState::Pending | JobState::Failed)) => {
            db.query(LIST_WAITING, &[&state.as_str(), &limit])?
        }
        Some(state) => db.query(LIST_IN_STATE, &[&state.as_str(), &limit])?,
        None => db.query(LIST_ALL, &[&limit])?,
    };
    jobs_with_after(&rows)
}

/// How [`crate::store::listing`] reads on PostgreSQL: waiting jobs in the order
/// of [`LIST_WAITING`].
const DIALECT: Dialect = Dialect {
    columns: concat!(job_columns!(), ", ", after_ids!()),
    limit: "$1",
    queue: "$2",
    waiting_order: &[
        (
            "CASE WHEN blocked_by > 0 THEN 2 WHEN scheduled THEN 1 ELSE 0 END",
            false,
        ),
        (
            "CASE WHEN blocked_by = 0 AND NOT scheduled THEN priority ELSE 0 END",
            true,
        ),
        (
            "CASE WHEN blocked_by > 0 THEN 0 ELSE next_run_at END",
            false,
        ),
        ("seq", false),
    ],
};

/// `list` in any order, keeping either end; the natural order from the start is
/// [`list_jobs`]'s.
pub(super) fn list_ordered<C: GenericClient>(
    db: &mut Db<'_, C>,
    listing: &JobListing,
) -> Step<Vec<Job>> {
    let limit = listing.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    if listing.order == JobOrder::Natural && !listing.from_end && listing.is_plain() {
        return list_jobs(db, listing.state, limit);
    }
    // Built per call from fixed words (never user text), so not in the statement
    // cache, which holds `'static` statements only.
    let sql = listing_sql(listing, &DIALECT);
    let rows = match &listing.queue {
        Some(queue) => db.client.query(sql.as_str(), &[&limit, queue])?,
        None => db.client.query(sql.as_str(), &[&limit])?,
    };
    jobs_with_after(&rows)
}

/// Jobs read with [`job_columns!`] followed by their `after` ids (newline-joined).
fn jobs_with_after(rows: &[postgres::Row]) -> Step<Vec<Job>> {
    rows.iter()
        .map(|row| {
            let mut job = job_from_row(row)?;
            let after: Option<&str> = row.try_get(JOB_COLUMN_COUNT)?;
            job.after = after_from_lines(after);
            Ok(job)
        })
        .collect()
}

/// Whether any job is `processing` or `failed`, through the partial indexes of
/// running, ready and waiting jobs (the same predicates as SQLite's counts).
const JOBS_IN_FLIGHT: &str = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'processing') \
     OR EXISTS (SELECT 1 FROM jobs WHERE state IN ('pending', 'failed') AND blocked_by = 0 \
         AND NOT scheduled AND state = 'failed') \
     OR EXISTS (SELECT 1 FROM jobs WHERE scheduled AND state IN ('pending', 'failed') \
         AND blocked_by = 0 AND state = 'failed')";

/// Whether any job is `processing` or `failed` ([`crate::store::Store::jobs_in_flight`]).
pub(super) fn jobs_in_flight<C: GenericClient>(db: &mut Db<'_, C>) -> Step<bool> {
    Ok(db.query_one(JOBS_IN_FLIGHT, &[])?.try_get(0)?)
}

pub(super) fn count_jobs<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Counts> {
    let row = db.query_one(READ_NOW_AND_OLDEST_PENDING, &[])?;
    let mut counts = Counts {
        now: row.try_get(0)?,
        oldest_pending_at: row.try_get(1)?,
        ..Counts::default()
    };
    for (_, state, n) in super::completed::job_counts(db)?.0 {
        if let Ok(state) = state.parse::<JobState>() {
            *counts.by_state.entry(state).or_insert(0) += n;
        }
    }
    Ok(counts)
}
