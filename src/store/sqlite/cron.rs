//! Recurring jobs on SQLite: the `cron` table (`cron add/list/remove/pause/resume`)
//! and firing due entries for workers.
//!
//! Invariants: firing runs in one `BEGIN IMMEDIATE` transaction, so SQLite's single
//! writer already orders the workers; the guarded `ADVANCE_CRON` (`next_run_at` still
//! the tick read) and the run's unique key `NAME@TICK` say the same thing twice, as
//! on PostgreSQL, where they are what makes it exact. The run is enqueued by
//! [`jobs::enqueue`], the code path of `queuectl enqueue`, in that same transaction.
//! Workers first look with one cheap read (`EARLIEST_CRON`) and take the write lock
//! only when an entry is due.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{db_error, jobs};
use crate::error::StoreError;
use crate::store::Result;
use crate::store::cron::{self, CronEntry, CronFired, CronRun, Due, NewCronEntry, Plan};

/// The columns of a [`CronEntry`], in its field order.
macro_rules! cron_columns {
    () => {
        "name, schedule, tz, job, paused, next_run_at, last_run_at, created_at"
    };
}

/// Adds an entry unless one of that name exists (then nothing changes).
const INSERT_CRON: &str = "INSERT INTO cron (name, schedule, tz, job, paused, next_run_at, \
     created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6) ON CONFLICT (name) DO NOTHING";

/// One entry by name.
const READ_CRON: &str = concat!("SELECT ", cron_columns!(), " FROM cron WHERE name = ?1");

/// Every entry, by name.
const LIST_CRON: &str = concat!("SELECT ", cron_columns!(), " FROM cron ORDER BY name");

const DELETE_CRON: &str = "DELETE FROM cron WHERE name = ?1";

const PAUSE_CRON: &str = "UPDATE cron SET paused = 1 WHERE name = ?1";

/// Resumes a paused entry from its next tick `?2`.
const RESUME_CRON: &str = "UPDATE cron SET paused = 0, next_run_at = ?2 \
     WHERE name = ?1 AND paused = 1";

/// When the earliest entry that is not paused is due.
const EARLIEST_CRON: &str = "SELECT min(next_run_at) FROM cron WHERE paused = 0";

/// The entries due at `?1`, oldest tick first.
const READ_DUE_CRON: &str = "SELECT name, schedule, tz, job, next_run_at FROM cron \
     WHERE paused = 0 AND next_run_at <= ?1 ORDER BY next_run_at, name";

/// Moves entry `?1` from tick `?2` to `?3`, recording `?4` (if not NULL) as its last
/// run; changes nothing if another writer moved it first.
const ADVANCE_CRON: &str = "UPDATE cron SET next_run_at = ?3, \
     last_run_at = coalesce(?4, last_run_at) \
     WHERE name = ?1 AND next_run_at = ?2 AND paused = 0";

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<CronEntry> {
    Ok(CronEntry {
        name: r.get(0)?,
        schedule: r.get(1)?,
        tz: r.get(2)?,
        job: r.get(3)?,
        paused: r.get(4)?,
        next_run_at: r.get(5)?,
        last_run_at: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn read(tx: &Transaction<'_>, name: &str) -> Result<Option<CronEntry>> {
    tx.prepare_cached(READ_CRON)
        .and_then(|mut s| s.query_row([name], entry_from_row).optional())
        .map_err(db_error)
}

pub(super) fn add(
    tx: &Transaction<'_>,
    now: i64,
    entry: &NewCronEntry,
) -> Result<Option<CronEntry>> {
    let next = entry
        .schedule
        .next_after(now)
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    let added = tx
        .prepare_cached(INSERT_CRON)
        .and_then(|mut s| {
            s.execute(params![
                entry.name,
                entry.schedule.text(),
                entry.schedule.zone_name(),
                entry.job,
                next,
                now
            ])
        })
        .map_err(db_error)?;
    if added == 0 {
        return Ok(None);
    }
    read(tx, &entry.name)
}

pub(super) fn list(conn: &Connection) -> Result<Vec<CronEntry>> {
    let mut stmt = conn.prepare_cached(LIST_CRON).map_err(db_error)?;
    let rows = stmt.query_map([], entry_from_row).map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

pub(super) fn remove(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    let removed = tx
        .prepare_cached(DELETE_CRON)
        .and_then(|mut s| s.execute([name]))
        .map_err(db_error)?;
    Ok(removed > 0)
}

pub(super) fn set_paused(
    tx: &Transaction<'_>,
    now: i64,
    name: &str,
    paused: bool,
) -> Result<Option<CronEntry>> {
    let Some(entry) = read(tx, name)? else {
        return Ok(None);
    };
    if paused {
        tx.prepare_cached(PAUSE_CRON)
            .and_then(|mut s| s.execute([name]))
            .map_err(db_error)?;
    } else if entry.paused {
        let next =
            cron::next_on_resume(&entry.schedule, &entry.tz, now).unwrap_or(entry.next_run_at);
        tx.prepare_cached(RESUME_CRON)
            .and_then(|mut s| s.execute(params![name, next]))
            .map_err(db_error)?;
    }
    read(tx, name)
}

/// When the earliest entry that is not paused is due, read outside any
/// transaction (workers ask this about once a second).
pub(super) fn earliest(conn: &Connection) -> Result<Option<i64>> {
    conn.prepare_cached(EARLIEST_CRON)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)
}

/// Fires every entry due at `now`; see [`crate::store::cron`].
pub(super) fn fire(tx: &Transaction<'_>, now: i64) -> Result<CronFired> {
    let due: Vec<Due> = {
        let mut stmt = tx.prepare_cached(READ_DUE_CRON).map_err(db_error)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(Due {
                    name: r.get(0)?,
                    schedule: r.get(1)?,
                    tz: r.get(2)?,
                    job: r.get(3)?,
                    tick: r.get(4)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_error)?
    };
    let mut fired = CronFired::default();
    for entry in &due {
        let plan = cron::plan(entry, now);
        let (next, last) = match &plan {
            Plan::Run { next, .. } => (*next, Some(entry.tick)),
            Plan::Broken { retry_at, .. } => (*retry_at, None),
        };
        let moved = tx
            .prepare_cached(ADVANCE_CRON)
            .and_then(|mut s| s.execute(params![entry.name, entry.tick, next, last]))
            .map_err(db_error)?;
        if moved == 0 {
            continue; // another writer fired this tick
        }
        match plan {
            Plan::Run { job, .. } => {
                let enqueued = jobs::enqueue(tx, now, std::slice::from_ref(&*job))?;
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
    let earliest: Option<i64> = tx
        .prepare_cached(EARLIEST_CRON)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)?;
    fired.next_due_in = cron::due_in(earliest, now);
    Ok(fired)
}
