//! `export` and `import`: the whole queue as a stream of job records, out and back in.
//!
//! Invariants: an export is one read-only statement, so one snapshot, read through a
//! portal [`EXPORT_BATCH`] rows per round trip, so neither side holds the whole
//! result; it is never retried, since part of it may already be printed. An import
//! inserts jobs in the order given (`seq` follows it) in chunks of [`ENQUEUE_CHUNK`],
//! two statements per chunk, in one transaction: a duplicate id fails all of it with
//! that id's name.

use postgres::{Client, Transaction};

use super::jobs::ENQUEUE_CHUNK;
use super::listen::notify;
use super::{Db, Step, driver_error, duplicate_id, is_unique_violation};
use crate::error::StoreError;
use crate::job::{Job, JobState};
use crate::store::rows::{
    ATTEMPT_COLUMN_COUNT, JOB_COLUMN_COUNT, after_from_lines, attempt_columns, attempt_from_row,
    env_to_text, job_columns, job_from_row, qualified,
};
use crate::store::{AttemptRecord, Emit, JobRecord, RecordStream, control};

/// Rows fetched per round trip by `export`, which reads through a portal so that
/// neither side holds the whole result.
const EXPORT_BATCH: i32 = 1000;

/// Every job (or those in state `$1`) joined with its attempts, in enqueue order then
/// attempt order. Built at run time (the join qualifies the shared column lists) and
/// not cached: `export` runs once per command.
pub(super) fn export_jobs() -> String {
    format!(
        "SELECT {}, {}, (SELECT string_agg(d.after_id, E'\\n' ORDER BY d.after_id) \
         FROM job_dependencies d WHERE d.job_id = j.id) \
         FROM jobs j LEFT JOIN attempts a ON a.job_seq = j.seq \
         WHERE $1::text IS NULL OR j.state = $1 ORDER BY j.seq, a.lease_token",
        qualified("j", job_columns!()),
        qualified("a", attempt_columns!()),
    )
}

/// Where the export query puts the ids of the jobs a job runs after, one per line.
const AFTER_COLUMN: usize = JOB_COLUMN_COUNT + ATTEMPT_COLUMN_COUNT;

/// Sets imported jobs' scheduling options (arrays `$1`..`$6`), and whether each
/// waits for its time.
const IMPORT_SCHEDULE: &str = "UPDATE jobs j SET priority = t.priority, queue = t.queue, \
        run_at = t.run_at, unique_key = t.unique_key, env = t.env, \
        scheduled = j.state IN ('pending', 'failed') AND j.next_run_at > now_ms() \
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[]) \
        AS t(id, priority, queue, run_at, unique_key, env) \
    WHERE j.id = t.id";

/// Records that imported jobs `$1` run after jobs `$2` (pairwise).
const IMPORT_DEPENDENCIES: &str = "INSERT INTO job_dependencies (job_id, after_id) \
    SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING";

/// Jobs named in `after` that the store does not hold.
const UNKNOWN_AFTER: &str = "SELECT DISTINCT after_id FROM job_dependencies d \
    WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.after_id) ORDER BY after_id";

/// Marks every job that others run after.
const MARK_DEPENDED_ON: &str = "UPDATE jobs SET has_dependents = true \
    WHERE NOT has_dependents AND id IN (SELECT after_id FROM job_dependencies)";

/// Recounts what each pending job with `after` still waits for.
const RECOUNT_WAITING: &str = "UPDATE jobs j SET blocked_by = (SELECT count(*) \
        FROM job_dependencies d JOIN jobs a ON a.id = d.after_id \
        WHERE d.job_id = j.id AND a.state <> 'completed') \
    WHERE j.state = 'pending' AND j.id IN (SELECT job_id FROM job_dependencies)";

/// Inserts jobs exactly as exported (arrays `$1`..`$18`, in [`job_columns!`] order)
/// in array order.
const IMPORT_JOBS: &str = "\
    INSERT INTO jobs (id, command, cwd, state, attempts, max_retries, interruptions, \
        created_at, updated_at, next_run_at, lease_token, lease_expires_at, worker_id, \
        started_at, finished_at, exit_code, last_error, timeout_ms) \
    SELECT t.id, t.command, t.cwd, t.state, t.attempts, t.max_retries, t.interruptions, \
        t.created_at, t.updated_at, t.next_run_at, t.lease_token, t.lease_expires_at, \
        t.worker_id, t.started_at, t.finished_at, t.exit_code, t.last_error, t.timeout_ms \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
        $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
        $11::bigint[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[], \
        $16::bigint[], $17::text[], $18::bigint[]) WITH ORDINALITY \
        AS t(id, command, cwd, state, attempts, max_retries, interruptions, created_at, \
        updated_at, next_run_at, lease_token, lease_expires_at, worker_id, started_at, \
        finished_at, exit_code, last_error, timeout_ms, ord) \
    ORDER BY t.ord";

/// Inserts attempts exactly as exported (arrays `$1`..`$15`). An export carries the
/// output's tail, not all of it: the tail becomes the kept output, as for attempts
/// from before version 2. Each is keyed by its job's `seq`, given by the insert of
/// the jobs just before.
const IMPORT_ATTEMPTS: &str = "\
    INSERT INTO attempts (job_seq, job_id, lease_token, worker_id, started_at, \
        finished_at, outcome, exit_code, error, output_tail, output, output_total, host, \
        pid, signal, max_rss_kb, cpu_ms) \
    SELECT j.seq, t.job_id, t.lease_token, t.worker_id, t.started_at, t.finished_at, \
        t.outcome, t.exit_code, t.error, t.output_tail, convert_to(t.output_tail, 'UTF8'), \
        t.output_total, t.host, t.pid, t.signal, t.max_rss_kb, t.cpu_ms \
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
        $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::bigint[], \
        $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[]) \
        AS t(job_id, lease_token, worker_id, started_at, finished_at, outcome, exit_code, \
        error, output_tail, output_total, host, pid, signal, max_rss_kb, cpu_ms) \
    JOIN jobs j ON j.id = t.job_id";

/// Streams `export`: one statement (so one snapshot) read through a portal,
/// [`EXPORT_BATCH`] rows per round trip. Never retried: part of it may already be
/// printed.
pub(super) fn export_rows(client: &mut Client, state: Option<&str>, emit: Emit<'_>) -> Step<()> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let portal = tx.bind(export_jobs().as_str(), &[&state])?;
    let mut records = RecordStream::new(emit);
    loop {
        let rows = tx.query_portal(&portal, EXPORT_BATCH)?;
        for row in &rows {
            let attempt = || match row.try_get::<_, Option<i64>>(JOB_COLUMN_COUNT)? {
                Some(_) => attempt_from_row(row, JOB_COLUMN_COUNT).map(Some),
                None => Ok(None),
            };
            let job = || {
                let mut job = job_from_row(row)?;
                let after: Option<&str> = row.try_get(AFTER_COLUMN)?;
                job.after = after_from_lines(after);
                Ok::<_, StoreError>(job)
            };
            if records.row(row.try_get(0)?, job, attempt)?.is_break() {
                return Ok(());
            }
        }
        if rows.len() < EXPORT_BATCH as usize {
            break;
        }
    }
    records.finish();
    tx.commit()?;
    Ok(())
}

/// The body of `import`, in one transaction: inserts every chunk, then wakes idle
/// workers.
pub(super) fn import_in(
    db: &mut Db<'_, Transaction<'_>>,
    jobs: &[JobRecord],
    channel: &str,
) -> Step<()> {
    // Imported attempts may be older than the metrics rollup's mark: count again.
    super::stats::forget_rollup(db)?;
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        import_chunk(db, chunk)?;
        import_schedule(db, chunk)?;
    }
    // The imported completed jobs that no recent attempt locates are counted in
    // completed_rollup (see `completed`), under the mark as it is at the end.
    let completed: Vec<&str> = jobs
        .iter()
        .filter(|r| r.job.state == JobState::Completed)
        .map(|r| r.job.id.as_str())
        .collect();
    for ids in completed.chunks(ENQUEUE_CHUNK) {
        super::completed::roll_in_ids(db, ids)?;
    }
    if jobs.iter().any(|r| !r.job.after.is_empty()) {
        let unknown: Vec<String> = db
            .query(UNKNOWN_AFTER, &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if !unknown.is_empty() {
            return Err(StoreError::UnknownAfter(unknown));
        }
        db.execute(MARK_DEPENDED_ON, &[])?;
        db.execute(RECOUNT_WAITING, &[])?;
    }
    if !jobs.is_empty() {
        notify(db, channel)?;
    }
    Ok(())
}

/// Sets the scheduling options of one imported chunk and records their `after`.
fn import_schedule(db: &mut Db<'_, Transaction<'_>>, chunk: &[JobRecord]) -> Step<()> {
    let jobs: Vec<&Job> = chunk.iter().map(|r| &r.job).collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let priorities: Vec<i64> = jobs.iter().map(|j| j.priority).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let run_ats: Vec<Option<i64>> = jobs.iter().map(|j| j.run_at).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
    let envs: Vec<Option<String>> = jobs.iter().map(|j| env_to_text(j.env.as_ref())).collect();
    let set = db.execute(
        IMPORT_SCHEDULE,
        &[&ids, &priorities, &queues, &run_ats, &keys, &envs],
    );
    match set {
        Err(e) if is_unique_violation(&e) => {
            let id = jobs
                .iter()
                .find(|j| j.unique_key.is_some())
                .map_or("", |j| j.id.as_str());
            return Err(control::unique_key_taken(id, None));
        }
        other => other?,
    };
    let (dependents, afters): (Vec<&str>, Vec<&str>) = jobs
        .iter()
        .flat_map(|j| j.after.iter().map(|a| (j.id.as_str(), a.as_str())))
        .unzip();
    if !dependents.is_empty() {
        db.execute(IMPORT_DEPENDENCIES, &[&dependents, &afters])?;
    }
    Ok(())
}

/// Inserts one chunk of imported jobs and their attempts: two statements, in the
/// given order (`seq` follows it). A duplicate id fails with its name.
fn import_chunk(db: &mut Db<'_, Transaction<'_>>, chunk: &[JobRecord]) -> Step<()> {
    let jobs: Vec<&Job> = chunk.iter().map(|r| &r.job).collect();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let commands: Vec<&str> = jobs.iter().map(|j| j.command.as_str()).collect();
    let cwds: Vec<&str> = jobs.iter().map(|j| j.cwd.as_str()).collect();
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    let attempts: Vec<i64> = jobs.iter().map(|j| j.attempts).collect();
    let retries: Vec<i64> = jobs.iter().map(|j| j.max_retries).collect();
    let interruptions: Vec<i64> = jobs.iter().map(|j| j.interruptions).collect();
    let created: Vec<i64> = jobs.iter().map(|j| j.created_at).collect();
    let updated: Vec<i64> = jobs.iter().map(|j| j.updated_at).collect();
    let next_run: Vec<i64> = jobs.iter().map(|j| j.next_run_at).collect();
    let tokens: Vec<i64> = jobs.iter().map(|j| j.lease_token).collect();
    let expires: Vec<Option<i64>> = jobs.iter().map(|j| j.lease_expires_at).collect();
    let workers: Vec<Option<&str>> = jobs.iter().map(|j| j.worker_id.as_deref()).collect();
    let started: Vec<Option<i64>> = jobs.iter().map(|j| j.started_at).collect();
    let finished: Vec<Option<i64>> = jobs.iter().map(|j| j.finished_at).collect();
    let exit_codes: Vec<Option<i64>> = jobs.iter().map(|j| j.exit_code).collect();
    let errors: Vec<Option<&str>> = jobs.iter().map(|j| j.last_error.as_deref()).collect();
    let timeouts: Vec<Option<i64>> = jobs.iter().map(|j| j.timeout_ms).collect();
    let inserted = db.execute(
        IMPORT_JOBS,
        &[
            &ids,
            &commands,
            &cwds,
            &states,
            &attempts,
            &retries,
            &interruptions,
            &created,
            &updated,
            &next_run,
            &tokens,
            &expires,
            &workers,
            &started,
            &finished,
            &exit_codes,
            &errors,
            &timeouts,
        ],
    );
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            let id = driver_error(&e)
                .and_then(duplicate_id)
                .unwrap_or_else(|| ids.first().copied().unwrap_or_default().to_owned());
            return Err(StoreError::DuplicateId(id));
        }
        Err(e) => return Err(e),
    }
    let all: Vec<(&str, &AttemptRecord)> = chunk
        .iter()
        .flat_map(|r| r.attempts.iter().map(move |a| (r.job.id.as_str(), a)))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<&str> = all.iter().map(|(id, _)| *id).collect();
    let tokens: Vec<i64> = all.iter().map(|(_, a)| a.lease_token).collect();
    let workers: Vec<Option<&str>> = all.iter().map(|(_, a)| a.worker_id.as_deref()).collect();
    let started: Vec<Option<i64>> = all.iter().map(|(_, a)| a.started_at).collect();
    let finished: Vec<i64> = all.iter().map(|(_, a)| a.finished_at).collect();
    let outcomes: Vec<&str> = all.iter().map(|(_, a)| a.outcome.as_str()).collect();
    let exit_codes: Vec<Option<i64>> = all.iter().map(|(_, a)| a.exit_code).collect();
    let errors: Vec<Option<&str>> = all.iter().map(|(_, a)| a.error.as_deref()).collect();
    let tails: Vec<Option<&str>> = all.iter().map(|(_, a)| a.output_tail.as_deref()).collect();
    let totals: Vec<Option<i64>> = all.iter().map(|(_, a)| a.output_total).collect();
    let hosts: Vec<Option<&str>> = all.iter().map(|(_, a)| a.facts.host.as_deref()).collect();
    let pids: Vec<Option<i64>> = all.iter().map(|(_, a)| a.facts.pid).collect();
    let signals: Vec<Option<i64>> = all.iter().map(|(_, a)| a.facts.signal).collect();
    let rss: Vec<Option<i64>> = all.iter().map(|(_, a)| a.facts.max_rss_kb).collect();
    let cpu: Vec<Option<i64>> = all.iter().map(|(_, a)| a.facts.cpu_ms).collect();
    db.execute(
        IMPORT_ATTEMPTS,
        &[
            &job_ids,
            &tokens,
            &workers,
            &started,
            &finished,
            &outcomes,
            &exit_codes,
            &errors,
            &tails,
            &totals,
            &hosts,
            &pids,
            &signals,
            &rss,
            &cpu,
        ],
    )?;
    Ok(())
}
