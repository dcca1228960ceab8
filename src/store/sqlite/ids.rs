//! Finding jobs by the start of their id: one range of the unique index on `id`
//! (see [`crate::store::ids`]; the same statements, by name, in
//! `store::postgres::ids`).

use rusqlite::{Connection, params};

use super::db_error;
use crate::store::Result;
use crate::store::ids::{IdMatches, prefix_end};

/// Ids in `[?1, ?2)` (those starting with a prefix), in byte order, at most `?3`.
const FIND_IDS: &str = "SELECT id FROM jobs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3";

/// How many ids are in `[?1, ?2)`.
const COUNT_IDS: &str = "SELECT count(*) FROM jobs WHERE id >= ?1 AND id < ?2";

/// Ids from `?1` on, for a prefix with no end (every id from it on starts with it).
const FIND_IDS_FROM: &str = "SELECT id FROM jobs WHERE id >= ?1 ORDER BY id LIMIT ?2";

/// How many ids there are from `?1` on.
const COUNT_IDS_FROM: &str = "SELECT count(*) FROM jobs WHERE id >= ?1";

pub(super) fn with_prefix(conn: &Connection, prefix: &str, limit: usize) -> Result<IdMatches> {
    // One more than asked: whether there are more decides whether to count.
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let end = prefix_end(prefix);
    let ids = match &end {
        Some(end) => read_ids(conn, FIND_IDS, params![prefix, end, fetch])?,
        None => read_ids(conn, FIND_IDS_FROM, params![prefix, fetch])?,
    };
    IdMatches::from_first(ids, limit, || {
        let count: i64 = match &end {
            Some(end) => conn.query_row(COUNT_IDS, params![prefix, end], |r| r.get(0)),
            None => conn.query_row(COUNT_IDS_FROM, params![prefix], |r| r.get(0)),
        }
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    })
}

fn read_ids(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = stmt.query_map(params, |r| r.get(0)).map_err(db_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search reads the unique index on `id`, a range of it, never the table.
    #[test]
    fn the_prefix_search_is_a_range_of_the_id_index() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = super::super::SqliteStore::open(
            &dir.path().join("queue.db"),
            crate::store::OpenFor::Command,
            crate::store::IfMissing::Create,
        )
        .expect("open a new store");
        let cases: [(&str, &[&dyn rusqlite::ToSql]); 2] = [
            (FIND_IDS, params!["ab", "ac", 6]),
            (COUNT_IDS, params!["ab", "ac"]),
        ];
        for (sql, params) in cases {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .and_then(|mut stmt| {
                    let rows = stmt.query_map(params, |r| r.get::<_, String>(3))?;
                    rows.collect()
                })
                .expect("explain the statement");
            let plan = plan.join("; ");
            assert!(
                plan.contains("COVERING INDEX") && plan.contains("(id>? AND id<?)"),
                "{sql}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }
}
