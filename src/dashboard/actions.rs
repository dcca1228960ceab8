//! The dashboard's actions (`POST /api/v1/...`), reached only after the origin and
//! token checks of [`super::auth`]: enqueue, retry, cancel, and queue pause, resume
//! and concurrency. Each is one store call, all or nothing, as the CLI's.

use serde_json::{Value, json};

use super::http::{ApiError, Reply, Req};
use crate::cli::output::{cancel_json, job_json, queue_json};
use crate::job::Job;
use crate::job::options::validate_queue;
use crate::job::spec::JobSpec;
use crate::store::{QueueChange, Store};

pub fn post(req: &Req, path: &[&str], store: &mut dyn Store) -> Result<Reply, ApiError> {
    match path {
        ["jobs"] => enqueue(req, store),
        ["jobs", id, "retry"] => {
            let retried = store.retry(Some(&[(*id).to_owned()]), &[])?;
            Ok(Reply::ok(&json!({ "retried": retried })))
        }
        ["jobs", id, "cancel"] => {
            let plan = store.cancel(&[(*id).to_owned()])?;
            let done = cancel_json(&plan);
            Ok(Reply::ok(&json!({ "cancelled": done })))
        }
        ["queues", name, action] => queue(req, store, name, action),
        _ => Err(ApiError::new(
            404,
            "no such action; see the README's API reference",
        )),
    }
}

/// `POST /api/v1/jobs` with the job JSON `enqueue` takes. Its `cwd` defaults to
/// the dashboard's working directory.
fn enqueue(req: &Req, store: &mut dyn Store) -> Result<Reply, ApiError> {
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| ApiError::new(400, "the job JSON is not UTF-8"))?;
    let cwd = std::env::current_dir()
        .map_err(|e| ApiError::new(503, format!("cannot read the current directory: {e}")))?
        .to_string_lossy()
        .into_owned();
    let job = JobSpec::from_json(text)?.validate(&cwd)?;
    let enqueued = store.enqueue(std::slice::from_ref(&job))?;
    if let Some(Some(existing)) = enqueued.existing.first() {
        let mut value = match store.job(existing)? {
            Some(found) => job_json(&found),
            None => json!({"id": existing}),
        };
        value["duplicate"] = Value::Bool(true);
        return Ok(Reply::ok(&value));
    }
    let stored = match store.job(&job.id)? {
        Some(stored) => stored,
        None => Job::pending(job, 0, enqueued.created_at),
    };
    Ok(Reply::json(201, &job_json(&stored)))
}

/// `pause`, `resume`, or `concurrency` with `{"limit": N}` (`null`: no limit).
fn queue(req: &Req, store: &mut dyn Store, name: &str, action: &str) -> Result<Reply, ApiError> {
    let name = validate_queue(name)?;
    let change = match action {
        "pause" => QueueChange::Pause,
        "resume" => QueueChange::Resume,
        "concurrency" => {
            let body = req.json()?;
            let limit = match body.get("limit") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_i64() {
                    Some(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(ApiError::new(
                            400,
                            "limit must be a whole number of at least 1, or null for no limit",
                        ));
                    }
                },
            };
            QueueChange::Concurrency(limit)
        }
        _ => {
            return Err(ApiError::new(
                404,
                "queue actions are pause, resume and concurrency",
            ));
        }
    };
    store.set_queue(&name, change)?;
    let row = store
        .queues()?
        .into_iter()
        .find(|q| q.name == name)
        .map_or_else(|| json!({"name": name}), |q| queue_json(&q));
    Ok(Reply::ok(&row))
}
