//! Tests only: every statement that finds attempts by job reaches them through
//! their key, `(job_pos, lease_token)` (DECISIONS.md §17, §24), never by a scan of
//! `attempts`: `show`, `logs`, `export` and `clean` cost the same whatever the
//! history holds.

use rusqlite::Connection;

use super::{control, jobs, output, transfer};
use crate::store::OpenFor;

/// The plan of `sql` with every parameter NULL, one line per step.
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
    stmt.query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
        .expect("plan")
        .collect::<rusqlite::Result<_>>()
        .expect("plan rows")
}

#[test]
fn attempts_are_found_through_their_job_pos_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = super::SqliteStore::open(
        &dir.path().join("q.db"),
        OpenFor::Command,
        crate::store::IfMissing::Create,
    )
    .expect("store");
    let statements = [
        ("READ_JOB", jobs::READ_JOB),
        ("READ_ATTEMPTS", jobs::READ_ATTEMPTS),
        ("READ_KEPT_OUTPUT", output::READ_KEPT_OUTPUT),
        ("DELETE_ATTEMPTS", control::DELETE_ATTEMPTS),
        ("EXPORT_JOBS", transfer::EXPORT_JOBS.as_str()),
    ];
    for (name, sql) in statements {
        let plan = plan(&store.conn, sql);
        let text = plan.join("\n");
        let on_attempts: Vec<&String> = plan
            .iter()
            .filter(|l| {
                l.contains("attempts") || l.starts_with("SEARCH a ") || l.starts_with("SCAN a")
            })
            .collect();
        assert!(
            !on_attempts.is_empty(),
            "{name}: attempts not read?\n{text}"
        );
        for line in on_attempts {
            assert!(
                line.starts_with("SEARCH")
                    && line.contains("sqlite_autoindex_attempts_1 (job_pos=?"),
                "{name} reads attempts without their key:\n{text}"
            );
        }
    }
}
