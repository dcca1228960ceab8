//! The PostgreSQL driver as the store uses it: a connection with its cache of
//! prepared statements ([`Db`]: each statement is prepared once per connection,
//! then every call is one round trip), transactions, reading row columns, and
//! what a driver error means (unique violation, deadlock, broken connection).
//!
//! Invariant: every driver error becomes [`StoreError::Unavailable`] with the
//! driver's error kept as its source, so [`super::PgStore`] can word it for users
//! (scrubbed of any password) and decide whether to retry or reconnect.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, Transaction};

use crate::error::{InputError, StoreError};
use crate::store::Result;
use crate::store::rows::Columns;

/// An open connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) stmts: HashMap<&'static str, Statement>,
}

/// A driver error becomes [`StoreError::Unavailable`] with the driver's error kept as
/// its source: [`PgStore::failure`] later words it for users (host, scrubbed of any
/// password) and the retry and duplicate-id checks look at the source's SQLSTATE.
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::unavailable_because(error_text(&e), e)
    }
}

/// The driver's error behind `e`, if the driver raised it (rather than a queue rule
/// such as a duplicate id or a job that is not dead).
pub(super) fn driver_error(e: &StoreError) -> Option<&postgres::Error> {
    match e {
        StoreError::Unavailable {
            source: Some(source),
            ..
        } => source.downcast_ref::<postgres::Error>(),
        _ => None,
    }
}

/// Whether `e` is the driver reporting that a row broke a unique constraint.
pub(super) fn is_unique_violation(e: &StoreError) -> bool {
    driver_error(e).and_then(postgres::Error::code) == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The id named by a unique violation's detail: `Key (id)=(job1) already exists.`
pub(super) fn duplicate_id(e: &postgres::Error) -> Option<String> {
    let detail = e.as_db_error()?.detail()?;
    let rest = detail.strip_prefix("Key (id)=(")?;
    Some(rest.strip_suffix(") already exists.")?.to_owned())
}

/// The driver's message with its causes ("error connecting to server" alone does not
/// say whether the connection was refused or timed out).
pub(super) fn error_text(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the server refused a write as read-only: a read-only transaction (a
/// standby, `default_transaction_read_only`) or a user without the privilege.
pub(super) fn is_read_only(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION || *c == SqlState::INSUFFICIENT_PRIVILEGE
    )
}

pub(super) fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Errors after which the connection cannot be trusted: I/O and protocol failures
/// (no SQLSTATE), connection exceptions (08) and operator intervention (57, e.g. the
/// server shutting down).
pub(super) fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57"),
    }
}

/// One step of work against the database: a queue rule's error, or the driver's.
pub(super) type Step<T> = Result<T>;

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A client (or transaction) plus the connection's statement cache: every statement
/// is prepared once per connection, then each call is a single round trip.
pub(super) struct Db<'a, C> {
    pub(super) client: &'a mut C,
    pub(super) stmts: &'a mut HashMap<&'static str, Statement>,
}

impl<C: GenericClient> Db<'_, C> {
    pub(super) fn stmt(&mut self, sql: &'static str) -> Step<Statement> {
        if let Some(stmt) = self.stmts.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.stmts.insert(sql, stmt.clone());
        Ok(stmt)
    }

    pub(super) fn query(&mut self, sql: &'static str, params: Params<'_>) -> Step<Vec<Row>> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query(&stmt, params)?)
    }

    pub(super) fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Step<Row> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query_one(&stmt, params)?)
    }

    pub(super) fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> Step<Option<Row>> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.query_opt(&stmt, params)?)
    }

    pub(super) fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Step<u64> {
        let stmt = self.stmt(sql)?;
        Ok(self.client.execute(&stmt, params)?)
    }
}

/// Runs `f` inside a transaction on `conn` and commits.
pub(super) fn in_transaction<T>(
    conn: &mut Conn,
    f: &mut impl FnMut(&mut Db<'_, Transaction<'_>>) -> Step<T>,
) -> Step<T> {
    let mut tx = conn.client.transaction()?;
    let value = f(&mut Db {
        client: &mut tx,
        stmts: &mut conn.stmts,
    })?;
    tx.commit()?;
    Ok(value)
}

impl Columns for Row {
    type Error = StoreError;

    fn int(&self, at: usize) -> Step<i64> {
        Ok(self.try_get(at)?)
    }

    fn opt_int(&self, at: usize) -> Step<Option<i64>> {
        Ok(self.try_get(at)?)
    }

    fn text(&self, at: usize) -> Step<String> {
        Ok(self.try_get(at)?)
    }

    fn opt_text(&self, at: usize) -> Step<Option<String>> {
        Ok(self.try_get(at)?)
    }

    fn flag(&self, at: usize) -> Step<bool> {
        Ok(self.try_get(at)?)
    }

    fn invalid(&self, at: usize, problem: InputError) -> StoreError {
        StoreError::unavailable(format!(
            "the store holds a value this queuectl cannot read in column {at}: {problem}; \
             is it from a newer release?"
        ))
    }
}
