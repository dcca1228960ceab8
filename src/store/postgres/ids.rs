//! Finding jobs by the start of their id: one range of the unique index on `id`
//! (`jobs_id_key`; ids are `COLLATE "C"`, byte order, as on SQLite). See
//! [`crate::store::ids`]; the same statements, by name, in `store::sqlite::ids`.

use postgres::GenericClient;

use super::{Db, Step};
use crate::store::ids::{IdMatches, prefix_end};

/// Ids in `[$1, $2)` (those starting with a prefix), in byte order, at most `$3`.
const FIND_IDS: &str = "SELECT id FROM jobs WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3";

/// How many ids are in `[$1, $2)`.
const COUNT_IDS: &str = "SELECT count(*) FROM jobs WHERE id >= $1 AND id < $2";

/// Ids from `$1` on, for a prefix with no end (every id from it on starts with it).
const FIND_IDS_FROM: &str = "SELECT id FROM jobs WHERE id >= $1 ORDER BY id LIMIT $2";

/// How many ids there are from `$1` on.
const COUNT_IDS_FROM: &str = "SELECT count(*) FROM jobs WHERE id >= $1";

pub(super) fn with_prefix<C: GenericClient>(
    db: &mut Db<'_, C>,
    prefix: &str,
    limit: usize,
) -> Step<IdMatches> {
    // One more than asked: whether there are more decides whether to count.
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let end = prefix_end(prefix);
    let rows = match &end {
        Some(end) => db.query(FIND_IDS, &[&prefix, end, &fetch])?,
        None => db.query(FIND_IDS_FROM, &[&prefix, &fetch])?,
    };
    let ids = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    IdMatches::from_first(ids, limit, || {
        let row = match &end {
            Some(end) => db.query_one(COUNT_IDS, &[&prefix, end])?,
            None => db.query_one(COUNT_IDS_FROM, &[&prefix])?,
        };
        let count: i64 = row.try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NewJob;
    use crate::store::{Location, Store};

    /// The search reads a range of `jobs_id_key`, never the whole table: the ids'
    /// `COLLATE "C"` lets the index serve `>=`/`<` on a text parameter. Runs when
    /// `QUEUECTL_TEST_POSTGRES_URL` is set.
    #[test]
    fn the_prefix_search_is_a_range_of_the_id_index() {
        let Ok(url) = std::env::var("QUEUECTL_TEST_POSTGRES_URL") else {
            eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set");
            return;
        };
        let schema = format!("ids_{}", crate::job::generate_id());
        let Ok(Location::Postgres(pg)) = Location::parse(&url, Some(&schema)) else {
            panic!("bad QUEUECTL_TEST_POSTGRES_URL");
        };
        let mut store =
            super::super::PgStore::open(&pg, crate::store::IfMissing::Create).expect("store");
        let jobs: Vec<NewJob> = (0..5000)
            .map(|_| NewJob::new(crate::job::generate_id(), "true".into(), "/".into()))
            .collect();
        store.enqueue(&jobs).expect("enqueue");
        let conn = store.conn().expect("connection");
        conn.client.batch_execute("ANALYZE jobs").expect("analyze");
        let mut plans = Vec::new();
        let find: &[&(dyn postgres::types::ToSql + Sync)] = &[&"ab", &"ac", &6i64];
        let count: &[&(dyn postgres::types::ToSql + Sync)] = &[&"ab", &"ac"];
        for (sql, params) in [(FIND_IDS, find), (COUNT_IDS, count)] {
            let rows = conn
                .client
                .query(&format!("EXPLAIN {sql}"), params)
                .expect("explain");
            let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            plans.push((sql, plan.join("\n")));
        }
        let _ = store.drop_schema();
        for (sql, plan) in plans {
            // An index scan of the range, or (when the planner guesses few rows) a
            // bitmap scan of it with a sort of just those rows: either way a range
            // of `jobs_id_key`, never the table.
            let ranged = plan.contains("using jobs_id_key on jobs")
                || plan.contains("Bitmap Index Scan on jobs_id_key");
            assert!(ranged, "{sql}:\n{plan}");
            assert!(plan.contains("Index Cond: ((id >= "), "{sql}:\n{plan}");
            assert!(!plan.contains("Seq Scan"), "{sql}:\n{plan}");
        }
    }
}
