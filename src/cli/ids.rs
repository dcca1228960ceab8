//! Ids people can type: wherever a command takes a job id, any unique prefix of one
//! will do (`queuectl show 7k2`). Every command resolves the ids it is given here,
//! before acting, so the rule is the same everywhere.
//!
//! The rule, for each id given:
//! - a job with exactly that id: that job, even when longer ids start with it;
//! - else exactly one id starting with it: that job;
//! - else several: refused as bad input (exit 2, nothing changed), listing a few of
//!   them and asking for more characters;
//! - else none: the text is passed on unchanged, so the command reports an unknown
//!   job exactly as it always has (its own message and exit code).
//!
//! Matching is byte for byte (case-sensitive), from one character on.

use std::collections::{HashMap, HashSet};

use super::output::visible;
use crate::error::Failure;
use crate::job::NewJob;
use crate::store::Store;

/// How many matching ids an ambiguity error lists before "and N more".
const SHOWN: usize = 5;

/// The job `given` names: its whole id, or the one id it is a prefix of; see the
/// module documentation.
pub(super) fn resolve(store: &mut dyn Store, given: &str) -> Result<String, Failure> {
    if given.is_empty() {
        // An empty prefix would match every job; let the command refuse it.
        return Ok(String::new());
    }
    let found = store.ids_with_prefix(given, SHOWN)?;
    if found.is_exact(given) || found.total == 0 {
        return Ok(given.to_owned());
    }
    if found.total == 1
        && let Some(id) = found.ids.first()
    {
        return Ok(id.clone());
    }
    let mut listed = found.ids.join(", ");
    let more = found.total.saturating_sub(found.ids.len() as u64);
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    Err(Failure::usage(visible(&format!(
        "job id prefix '{given}' matches {} jobs: {listed}; type more characters of the id",
        found.total
    ))))
}

/// [`resolve`] for each of `given`, in order; two that name the same job count once.
pub(super) fn resolve_all(store: &mut dyn Store, given: &[String]) -> Result<Vec<String>, Failure> {
    let mut seen = HashSet::with_capacity(given.len());
    let mut ids = Vec::with_capacity(given.len());
    for text in given {
        let id = resolve(store, text)?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Resolves the `after` ids of jobs about to be enqueued together. An id one of
/// `jobs` itself has (a `--file` batch naming its own jobs) is taken as it is: the
/// store does not hold it yet, and a prefix must never turn it into another job.
pub(super) fn resolve_after(store: &mut dyn Store, jobs: &mut [NewJob]) -> Result<(), Failure> {
    if jobs.iter().all(|job| job.after.is_empty()) {
        return Ok(());
    }
    let batch: HashSet<String> = jobs.iter().map(|job| job.id.clone()).collect();
    let mut resolved: HashMap<String, String> = HashMap::new();
    for job in jobs.iter_mut() {
        let mut after = Vec::with_capacity(job.after.len());
        for given in &job.after {
            let id = match resolved.get(given) {
                Some(id) => id.clone(),
                None if batch.contains(given) => given.clone(),
                None => {
                    let id = resolve(store, given)?;
                    resolved.insert(given.clone(), id.clone());
                    id
                }
            };
            if !after.contains(&id) {
                after.push(id);
            }
        }
        job.after = after;
    }
    Ok(())
}
