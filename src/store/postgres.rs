//! The PostgreSQL store: the same queue shared by workers on many machines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    AttemptRecord, Counts, Exchange, ExchangeReply, Result, RunningJob, StopRequest, Store, Wake,
    WorkerInfo, WorkerRow, WorkerState,
};
use crate::error::StoreError;
use crate::job::{Job, JobState, NewJob};

/// A parsed `postgres://` URL. The password stays inside and is never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// The URL as given, minus the `schema` parameter.
    url: String,
    pub schema: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

impl PgLocation {
    pub fn parse(text: &str, schema: Option<&str>) -> Result<PgLocation> {
        let bad = |why: &str| {
            StoreError::BadLocation(format!(
                "invalid PostgreSQL URL {}: {why}; expected postgres://user@host:port/dbname",
                redact(text)
            ))
        };
        let (base, query) = match text.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (text, None),
        };
        let mut url_schema = None;
        let mut kept = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("schema", value)) => url_schema = Some(value.to_owned()),
                _ => kept.push(pair),
            }
        }
        let schema = schema
            .map(str::to_owned)
            .or(url_schema)
            .unwrap_or_else(|| "queuectl".to_owned());
        if schema.is_empty()
            || schema.len() > 63
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad(
                "the schema must be 1-63 letters, digits or underscores, not starting with a digit",
            ));
        }
        let rest = base
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("missing ://"))?;
        let (authority, dbname) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let user = userinfo.split(':').next().unwrap_or_default().to_owned();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => (
                h.to_owned(),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (hostport.to_owned(), 5432),
        };
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(PgLocation {
            url,
            schema,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            dbname: dbname.to_owned(),
        })
    }

    /// `postgres://user@host:port/db (schema s)`, never with the password.
    pub fn describe(&self) -> String {
        format!(
            "postgres://{}{}:{}/{} (schema {})",
            if self.user.is_empty() {
                String::new()
            } else {
                format!("{}@", self.user)
            },
            self.host,
            self.port,
            self.dbname,
            self.schema
        )
    }

    /// The connection URL for the driver (may hold a password: never print it).
    pub fn connection_url(&self) -> &str {
        &self.url
    }
}

/// Replaces the password in a URL-like string with `***`.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => text.to_owned(),
    }
}

/// Placeholder until the PostgreSQL backend lands.
pub struct PgStore {
    location: PgLocation,
}

impl PgStore {
    pub fn open(location: &PgLocation) -> Result<PgStore> {
        let _ = location;
        Err(StoreError::BadLocation(
            "the PostgreSQL store is not available in this build yet".into(),
        ))
    }
}

#[allow(unused_variables)]
impl Store for PgStore {
    fn describe(&self) -> String {
        self.location.describe()
    }
    fn spool_dir(&self) -> PathBuf {
        PathBuf::new()
    }
    fn subscribe(&self, wake: Wake) -> Result<()> {
        unimplemented_pg()
    }
    fn settings(&mut self) -> Result<BTreeMap<String, String>> {
        unimplemented_pg()
    }
    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        unimplemented_pg()
    }
    fn enqueue(&mut self, jobs: &[NewJob]) -> Result<i64> {
        unimplemented_pg()
    }
    fn job(&mut self, id: &str) -> Result<Option<Job>> {
        unimplemented_pg()
    }
    fn attempts(&mut self, id: &str) -> Result<Vec<AttemptRecord>> {
        unimplemented_pg()
    }
    fn list(&mut self, state: Option<JobState>, limit: Option<usize>) -> Result<Vec<Job>> {
        unimplemented_pg()
    }
    fn counts(&mut self) -> Result<Counts> {
        unimplemented_pg()
    }
    fn retry_dead(&mut self, ids: Option<&[String]>) -> Result<Vec<String>> {
        unimplemented_pg()
    }
    fn register_workers(&mut self, workers: &[WorkerInfo]) -> Result<()> {
        unimplemented_pg()
    }
    fn end_workers(&mut self, ids: &[String], state: WorkerState) -> Result<()> {
        unimplemented_pg()
    }
    fn workers(&mut self, include_ended: bool) -> Result<Vec<WorkerRow>> {
        unimplemented_pg()
    }
    fn request_stop(&mut self, host: Option<&str>, stop: StopRequest) -> Result<Vec<String>> {
        unimplemented_pg()
    }
    fn exchange(&mut self, exchange: &Exchange<'_>) -> Result<ExchangeReply> {
        unimplemented_pg()
    }
    fn running_jobs(&mut self) -> Result<Vec<RunningJob>> {
        unimplemented_pg()
    }
}

fn unimplemented_pg<T>() -> Result<T> {
    Err(StoreError::Unavailable(
        "PostgreSQL store not implemented".into(),
    ))
}
