//! The queue's schema: creating it, migrating it and dropping it.
//!
//! Invariants: every object lives in the queue's own schema (`?schema=`, default
//! `queuectl`); migrations run in order under a transaction-level advisory lock keyed
//! by the schema, so concurrent first starts on several machines are safe and queues
//! in different schemas do not wait for each other; the `schema_version` row counts
//! the applied migrations, and a schema written by a newer queuectl is refused; a
//! schema that holds tables but no `schema_version` is someone else's and is refused.

use postgres::Transaction;
use postgres::error::SqlState;

use super::{Db, PgStore, Step, quote_ident};
use crate::error::StoreError;
use crate::store::{IfMissing, Result, Store};

/// Migrations, applied in order; the `schema_version` row counts the applied ones.
const MIGRATIONS: &[&str] = &[
    include_str!("0001_init.sql"),
    include_str!("0002_control.sql"),
    include_str!("0003_schedule.sql"),
    include_str!("0004_attempt_seq.sql"),
    include_str!("0005_stats.sql"),
    include_str!("0006_completed_rollup.sql"),
    include_str!("0007_layout.sql"),
];

/// First key of the migration advisory lock ("QCTL"); the second is the schema's hash,
/// so queues in different schemas do not wait for each other.
const MIGRATION_LOCK: i32 = 0x5143_544C;

/// How many migrations the schema has had; no row means none.
const READ_SCHEMA_VERSION: &str = "SELECT version FROM schema_version";

/// Waits for the migration lock of schema `$2` (held until the transaction ends).
const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// Whether schema `$1` has a `schema_version` table, and whether it has any table.
const INSPECT_SCHEMA: &str = "\
    SELECT count(*) FILTER (WHERE tablename = 'schema_version') > 0, count(*) > 0 \
    FROM pg_tables WHERE schemaname = $1";

/// Records that `$1` migrations have been applied.
const WRITE_SCHEMA_VERSION: &str = "INSERT INTO schema_version (version) VALUES ($1) \
    ON CONFLICT (one) DO UPDATE SET version = excluded.version";

impl PgStore {
    /// Drops this store's schema with everything in it, and this host's spool
    /// directory for it (see [`crate::store::remove_scratch`]).
    pub fn drop_schema(mut self) -> Result<()> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&self.location.schema)
        );
        let conn = self.conn()?;
        let result = conn.client.batch_execute(&sql);
        result.map_err(|e| self.failure(e.into()))?;
        let spool = self.spool_dir();
        match std::fs::remove_dir_all(&spool) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(
                format!("could not delete {}", spool.display()),
                e,
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn migrate(&mut self, if_missing: IfMissing) -> Result<()> {
        // Fast path, one round trip: the schema exists and is current.
        let found = self.read(|db| match db.client.query_opt(READ_SCHEMA_VERSION, &[]) {
            Ok(row) => Ok(Some(row.map_or(Ok(0), |r| r.try_get::<_, i64>(0))?)),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(e.into()),
        })?;
        let supported = MIGRATIONS.len() as i64;
        match found {
            Some(v) if v == supported => Ok(()),
            Some(v) if v > supported => Err(StoreError::TooNew {
                found: v,
                supported,
            }),
            None if if_missing == IfMissing::Refuse => Err(StoreError::Missing(format!(
                "no queuectl store in {}; `queuectl init` creates one there (so does any \
                 command that writes, such as `enqueue`), or give another with --db or --schema",
                self.location.describe()
            ))),
            _ => {
                let schema = self.location.schema.clone();
                let describe = self.location.describe();
                self.write(|db| migrate_locked(db, &schema, &describe))
            }
        }
    }
}

/// Creates or upgrades the schema. The advisory lock serialises concurrent first
/// starts; everything is re-checked under it, since another process may have
/// migrated while we waited.
fn migrate_locked(db: &mut Db<'_, Transaction<'_>>, schema: &str, describe: &str) -> Step<()> {
    db.client
        .execute(LOCK_MIGRATIONS, &[&MIGRATION_LOCK, &schema])?;
    db.client.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {}",
        quote_ident(schema)
    ))?;
    let row = db.client.query_one(INSPECT_SCHEMA, &[&schema])?;
    let (has_version, has_tables): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !has_version && has_tables {
        return Err(StoreError::BadLocation(format!(
            "schema {schema} of {describe} holds tables but is not a queuectl schema; \
             choose another with ?schema=NAME or --schema"
        )));
    }
    let version: i64 = if has_version {
        let row = db.client.query_opt(READ_SCHEMA_VERSION, &[])?;
        row.map_or(Ok(0), |r| r.try_get(0))?
    } else {
        0
    };
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for sql in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
        db.client.batch_execute(sql)?;
    }
    db.client.execute(WRITE_SCHEMA_VERSION, &[&supported])?;
    Ok(())
}
