//! The dashboard's reads (`GET /api/v1/...`): the overview, the throughput chart,
//! job lists, one job with its attempts and output, queues and workers. Jobs,
//! attempts, queues and workers have the JSON shapes of the CLI's `--json`
//! ([`crate::cli::output`]).
//!
//! Invariant: a list reads one page (`limit` at most [`MAX_LIMIT`]) through
//! [`JobListing`] or the id-prefix index; nothing reads every job.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{ApiError, Reply, Req};
use crate::cli::logs;
use crate::cli::output::{attempt_json, job_json, queue_json, timestamp, worker_json};
use crate::job::JobState;
use crate::store::{JobListing, JobOrder, Store};

/// The largest page a list returns.
pub const MAX_LIMIT: usize = 200;
/// A page when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

pub fn get(req: &Req, path: &[&str], store: &mut dyn Store) -> Result<Reply, ApiError> {
    let value = match path {
        ["overview"] => overview(store, req.param("queues") != Some("0"))?,
        ["throughput"] => throughput(store)?,
        ["jobs"] => jobs(req, store, None)?,
        ["dlq"] => jobs(req, store, Some(JobState::Dead))?,
        ["jobs", id] => job(store, id)?,
        ["jobs", id, "output"] => output(req, store, id)?,
        ["queues"] => json!({"queues": store.queues()?.iter().map(queue_json).collect::<Vec<_>>()}),
        ["workers"] => workers(store)?,
        _ => {
            return Err(ApiError::new(
                404,
                "no such API endpoint; see the README's API reference",
            ));
        }
    };
    Ok(Reply::ok(&value))
}

/// Counts per state and queue, workers per host, the oldest ready job's age. The
/// per-queue counts are the one read that grows with the store (a grouped count of
/// every job), so `?queues=0` leaves them out: the page asks for them every 5 s and
/// for the rest every second.
fn overview(store: &mut dyn Store, with_queues: bool) -> Result<Value, ApiError> {
    let counts = store.counts()?;
    let mut by_state = serde_json::Map::new();
    for state in JobState::ALL {
        by_state.insert(state.as_str().into(), json!(counts.get(state)));
    }
    let total: i64 = JobState::ALL.iter().map(|s| counts.get(*s)).sum();
    by_state.insert("total".into(), json!(total));
    let workers = store.workers(false)?;
    let busy = workers.iter().filter(|w| w.job.is_some()).count();
    let mut value = json!({
        "now": timestamp(counts.now),
        "counts": by_state,
        "oldest_pending_age_seconds": counts
            .oldest_pending_at
            .map(|at| (counts.now - at).max(0) as f64 / 1000.0),
        "workers": {"live": workers.len(), "busy": busy, "idle": workers.len() - busy},
        "hosts": hosts(&workers),
    });
    if with_queues {
        value["queues"] = store.queues()?.iter().map(queue_json).collect();
    }
    Ok(value)
}

/// Live workers per host: how many, how many busy, how many idle.
fn hosts(workers: &[crate::store::WorkerRow]) -> Vec<Value> {
    let mut by_host: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for w in workers {
        let entry = by_host.entry(w.info.host.as_str()).or_default();
        entry.0 += 1;
        if w.job.is_some() {
            entry.1 += 1;
        }
    }
    by_host
        .into_iter()
        .map(|(host, (live, busy))| {
            json!({"host": host, "live": live, "busy": busy, "idle": live - busy})
        })
        .collect()
}

/// Attempts finished per minute over the last hour.
fn throughput(store: &mut dyn Store) -> Result<Value, ApiError> {
    let t = store.throughput(Duration::from_secs(3600), Duration::from_secs(60))?;
    Ok(json!({
        "now": timestamp(t.now),
        "bucket_seconds": t.bucket_ms / 1000,
        "succeeded": t.succeeded,
        "other": t.other,
    }))
}

/// A page of jobs, newest first: `state`, `queue`, `prefix` (of the id), `limit`,
/// `offset`. `fixed` is the state of the `dlq` endpoint.
fn jobs(req: &Req, store: &mut dyn Store, fixed: Option<JobState>) -> Result<Value, ApiError> {
    let state = match (fixed, req.param("state")) {
        (Some(state), _) => Some(state),
        (None, Some(text)) => Some(text.parse::<JobState>()?),
        (None, None) => None,
    };
    let queue = req.param("queue").map(str::to_owned);
    let limit = number(req, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            400,
            format!("limit must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let offset = number(req, "offset")?.unwrap_or(0);
    if let Some(prefix) = req.param("prefix") {
        return by_prefix(store, prefix, state, queue.as_deref(), limit, offset);
    }
    let mut page = store.list_jobs(&JobListing {
        state,
        queue: queue.clone(),
        order: JobOrder::Created,
        limit: Some(limit + 1),
        offset,
        from_end: true,
    })?;
    page.reverse();
    let more = page.len() > limit;
    page.truncate(limit);
    let total = match &queue {
        None => {
            let counts = store.counts()?;
            state.map_or_else(
                || JobState::ALL.iter().map(|s| counts.get(*s)).sum(),
                |s| counts.get(s),
            )
        }
        Some(name) => store
            .queues()?
            .iter()
            .find(|q| &q.name == name)
            .map_or(0, |q| {
                state.map_or_else(
                    || JobState::ALL.iter().map(|s| q.counts.get(*s)).sum(),
                    |s| q.counts.get(s),
                )
            }),
    };
    Ok(json!({
        "jobs": page.iter().map(job_json).collect::<Vec<_>>(),
        "offset": offset,
        "limit": limit,
        "total": total,
        "more": more,
    }))
}

/// Jobs whose id starts with `prefix`, in id order: one range read of the id index
/// for the page, then each job by id; `state` and `queue` filter that page.
fn by_prefix(
    store: &mut dyn Store,
    prefix: &str,
    state: Option<JobState>,
    queue: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<Value, ApiError> {
    let found = store.ids_with_prefix(prefix, offset + limit)?;
    let mut jobs = Vec::new();
    for id in found.ids.iter().skip(offset) {
        if let Some(job) = store.job(id)?
            && state.is_none_or(|s| job.state == s)
            && queue.is_none_or(|q| job.queue == q)
        {
            jobs.push(job_json(&job));
        }
    }
    Ok(json!({
        "jobs": jobs,
        "offset": offset,
        "limit": limit,
        "total": found.total,
        "more": found.total > (offset + limit) as u64,
    }))
}

fn number(req: &Req, name: &str) -> Result<Option<usize>, ApiError> {
    req.param(name)
        .map(|text| {
            text.parse::<usize>().map_err(|_| {
                ApiError::new(400, format!("{name} must be a whole number, not '{text}'"))
            })
        })
        .transpose()
}

/// One job with its attempts (as `show --json`).
fn job(store: &mut dyn Store, id: &str) -> Result<Value, ApiError> {
    let job = find(store, id)?;
    let mut history = store.attempts(id)?;
    history.sort_by_key(|a| a.lease_token);
    let mut value = job_json(&job);
    value["history"] = history
        .iter()
        .enumerate()
        .map(|(i, a)| attempt_json(i + 1, a))
        .collect();
    Ok(value)
}

fn find(store: &mut dyn Store, id: &str) -> Result<crate::job::Job, ApiError> {
    store
        .job(id)?
        .ok_or_else(|| ApiError::new(404, format!("no job with id '{id}'")))
}

/// The output of one attempt (`attempt`, from 1; default the newest), whole as
/// stored, with an omission line where the store dropped some; `running` while the
/// attempt runs, so the page polls again.
fn output(req: &Req, store: &mut dyn Store, id: &str) -> Result<Value, ApiError> {
    let job = find(store, id)?;
    let attempts = logs::attempts_of(store, &job)?;
    let wanted = number(req, "attempt")?;
    let attempt = match wanted {
        Some(n) => attempts.iter().find(|a| a.number == n).ok_or_else(|| {
            ApiError::new(
                404,
                format!(
                    "job '{id}' has {} attempts; attempt {n} is not one",
                    attempts.len()
                ),
            )
        })?,
        None => match attempts.last() {
            Some(a) => a,
            None => {
                return Ok(json!({
                    "attempt": null, "attempts": 0, "running": false,
                    "output": "", "total": 0, "state": job.state.as_str(),
                }));
            }
        },
    };
    let (bytes, total) = logs::read_whole(store, id, attempt.token)?;
    Ok(json!({
        "attempt": attempt.number,
        "attempts": attempts.len(),
        "running": attempt.record.is_none(),
        "output": String::from_utf8_lossy(&bytes),
        "total": total,
        "state": job.state.as_str(),
    }))
}

fn workers(store: &mut dyn Store) -> Result<Value, ApiError> {
    let workers = store.workers(false)?;
    Ok(json!({
        "workers": workers.iter().map(worker_json).collect::<Vec<_>>(),
        "hosts": hosts(&workers),
    }))
}
