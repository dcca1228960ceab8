//! Recurring jobs on PostgreSQL: the `cron` table (`cron add/list/remove/pause/
//! resume`) and firing due entries for workers on every host.
//!
//! Invariants: firing runs in one transaction whose clock is the database's
//! (`now_ms()`, the transaction's start). Due entries are locked as they are read
//! (`FOR UPDATE SKIP LOCKED`, so a worker never waits for another that is firing the
//! same entry), and `ADVANCE_CRON` moves an entry only while `next_run_at` is still
//! the tick read: under READ COMMITTED an update that waited for a concurrent one
//! re-reads the row, finds it moved and changes nothing, so of two workers at one
//! tick exactly one moves the entry, and only that one enqueues the run. The run is
//! enqueued by [`jobs::enqueue_in`], the code path of `queuectl enqueue`, in the same
//! transaction, keyed `NAME@TICK`, so the store's unique index would refuse a second
//! copy of an unfinished run even then. `cron add` and `resume` NOTIFY, so workers
//! learn of a new next tick at once.

use postgres::{GenericClient, Row, Transaction};

use super::listen::notify;
use super::{Db, Step, jobs};
use crate::error::StoreError;
use crate::store::cron::{self, CronEntry, CronFired, CronRun, Due, NewCronEntry, Plan};

/// The columns of a [`CronEntry`], in its field order.
macro_rules! cron_columns {
    () => {
        "name, schedule, tz, job, paused, next_run_at, last_run_at, created_at"
    };
}

/// The database's clock (the transaction's start).
const READ_NOW: &str = "SELECT now_ms()";

/// Adds an entry unless one of that name exists (then nothing changes, no row).
const INSERT_CRON: &str = concat!(
    "INSERT INTO cron (name, schedule, tz, job, paused, next_run_at, created_at) \
     VALUES ($1, $2, $3, $4, false, $5, now_ms()) ON CONFLICT (name) DO NOTHING \
     RETURNING ",
    cron_columns!()
);

/// One entry by name, locked until the transaction ends.
const READ_CRON: &str = concat!(
    "SELECT ",
    cron_columns!(),
    " FROM cron WHERE name = $1 FOR UPDATE"
);

/// Every entry, by name.
const LIST_CRON: &str = concat!("SELECT ", cron_columns!(), " FROM cron ORDER BY name");

const DELETE_CRON: &str = "DELETE FROM cron WHERE name = $1";

const PAUSE_CRON: &str = concat!(
    "UPDATE cron SET paused = true WHERE name = $1 RETURNING ",
    cron_columns!()
);

/// Resumes a paused entry from its next tick `$2`.
const RESUME_CRON: &str = concat!(
    "UPDATE cron SET paused = false, next_run_at = $2 WHERE name = $1 AND paused \
     RETURNING ",
    cron_columns!()
);

/// The database's clock and when the earliest entry that is not paused is due.
const EARLIEST_CRON: &str = "SELECT now_ms(), (SELECT min(next_run_at) FROM cron WHERE NOT paused)";

/// The entries due now, oldest tick first, locked; those another transaction is
/// firing are skipped.
const READ_DUE_CRON: &str = "SELECT name, schedule, tz, job, next_run_at FROM cron \
    WHERE NOT paused AND next_run_at <= now_ms() ORDER BY next_run_at, name \
    FOR UPDATE SKIP LOCKED";

/// Moves entry `$1` from tick `$2` to `$3`, recording `$4` (if not NULL) as its last
/// run; changes nothing if another transaction moved it first.
const ADVANCE_CRON: &str = "UPDATE cron SET next_run_at = $3, \
    last_run_at = coalesce($4, last_run_at) \
    WHERE name = $1 AND next_run_at = $2 AND NOT paused";

fn entry_from_row(row: &Row) -> Step<CronEntry> {
    Ok(CronEntry {
        name: row.try_get(0)?,
        schedule: row.try_get(1)?,
        tz: row.try_get(2)?,
        job: row.try_get(3)?,
        paused: row.try_get(4)?,
        next_run_at: row.try_get(5)?,
        last_run_at: row.try_get(6)?,
        created_at: row.try_get(7)?,
    })
}

pub(super) fn add_in(
    db: &mut Db<'_, Transaction<'_>>,
    entry: &NewCronEntry,
    channel: &str,
) -> Step<Option<CronEntry>> {
    let now: i64 = db.query_one(READ_NOW, &[])?.try_get(0)?;
    let next = entry
        .schedule
        .next_after(now)
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    let row = db.query_opt(
        INSERT_CRON,
        &[
            &entry.name,
            &entry.schedule.text(),
            &entry.schedule.zone_name(),
            &entry.job,
            &next,
        ],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    notify(db, channel)?;
    entry_from_row(&row).map(Some)
}

pub(super) fn list<C: GenericClient>(db: &mut Db<'_, C>) -> Step<Vec<CronEntry>> {
    db.query(LIST_CRON, &[])?
        .iter()
        .map(entry_from_row)
        .collect()
}

pub(super) fn remove<C: GenericClient>(db: &mut Db<'_, C>, name: &str) -> Step<bool> {
    Ok(db.execute(DELETE_CRON, &[&name])? > 0)
}

pub(super) fn set_paused_in(
    db: &mut Db<'_, Transaction<'_>>,
    name: &str,
    paused: bool,
    channel: &str,
) -> Step<Option<CronEntry>> {
    let Some(row) = db.query_opt(READ_CRON, &[&name])? else {
        return Ok(None);
    };
    let entry = entry_from_row(&row)?;
    if paused {
        let row = db.query_one(PAUSE_CRON, &[&name])?;
        return entry_from_row(&row).map(Some);
    }
    if !entry.paused {
        return Ok(Some(entry));
    }
    let now: i64 = db.query_one(READ_NOW, &[])?.try_get(0)?;
    let next = cron::next_on_resume(&entry.schedule, &entry.tz, now).unwrap_or(entry.next_run_at);
    let row = db.query_one(RESUME_CRON, &[&name, &next])?;
    notify(db, channel)?;
    entry_from_row(&row).map(Some)
}

/// The database's clock and when the earliest entry that is not paused is due:
/// one read, outside any transaction (workers ask this about once a second).
pub(super) fn earliest<C: GenericClient>(db: &mut Db<'_, C>) -> Step<(i64, Option<i64>)> {
    let row = db.query_one(EARLIEST_CRON, &[])?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Fires every entry due now; see [`crate::store::cron`].
pub(super) fn fire_in(db: &mut Db<'_, Transaction<'_>>, channel: &str) -> Step<CronFired> {
    let now: i64 = db.query_one(READ_NOW, &[])?.try_get(0)?;
    let mut due = Vec::new();
    for row in db.query(READ_DUE_CRON, &[])? {
        due.push(Due {
            name: row.try_get(0)?,
            schedule: row.try_get(1)?,
            tz: row.try_get(2)?,
            job: row.try_get(3)?,
            tick: row.try_get(4)?,
        });
    }
    let mut fired = CronFired::default();
    for entry in &due {
        let plan = cron::plan(entry, now);
        let (next, last) = match &plan {
            Plan::Run { next, .. } => (*next, Some(entry.tick)),
            Plan::Broken { retry_at, .. } => (*retry_at, None),
        };
        let moved = db.execute(ADVANCE_CRON, &[&entry.name, &entry.tick, &next, &last])?;
        if moved == 0 {
            continue; // another worker fired this tick
        }
        match plan {
            Plan::Run { job, .. } => {
                let enqueued = jobs::enqueue_in(db, std::slice::from_ref(&*job), channel)?;
                let holder = enqueued.existing.into_iter().next().flatten();
                fired.runs.push(CronRun {
                    name: entry.name.clone(),
                    tick: entry.tick,
                    existing: holder.is_some(),
                    job_id: holder.unwrap_or(job.id),
                });
            }
            Plan::Broken { why, .. } => fired.broken.push((entry.name.clone(), why)),
        }
    }
    let (_, earliest) = earliest(db)?;
    fired.next_due_in = cron::due_in(earliest, now);
    Ok(fired)
}
