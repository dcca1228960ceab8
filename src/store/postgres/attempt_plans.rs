//! Tests only: every statement that finds attempts by job reaches them through
//! their key, `attempts_pkey` on `(job_seq, lease_token)` (DECISIONS.md §17), never
//! by a sequential scan: `show` and `logs` cost the same whatever the history holds.
//! Runs when `QUEUECTL_TEST_POSTGRES_URL` is set.

use super::{PgStore, jobs, output};
use crate::job::NewJob;
use crate::store::{Location, Store};

#[test]
fn attempts_are_found_through_their_job_seq_key() {
    let Ok(url) = std::env::var("QUEUECTL_TEST_POSTGRES_URL") else {
        eprintln!("skipped: QUEUECTL_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("plan_attempts_{}", crate::job::generate_id());
    let Ok(Location::Postgres(pg)) = Location::parse(&url, Some(&schema)) else {
        panic!("bad QUEUECTL_TEST_POSTGRES_URL");
    };
    let mut store = PgStore::open(&pg, crate::store::IfMissing::Create).expect("store");
    let jobs: Vec<NewJob> = (0..3000)
        .map(|i| NewJob::new(format!("j{i}"), "true".into(), "/".into()))
        .collect();
    store.enqueue(&jobs).expect("enqueue");
    let conn = store.conn().expect("connection");
    // Two attempts per job, as a worker would have recorded them.
    conn.client
        .batch_execute(
            "INSERT INTO attempts (job_seq, job_id, lease_token, finished_at, outcome) \
             SELECT seq, id, t, 0, 'failed' FROM jobs, generate_series(1, 2) AS t; \
             ANALYZE jobs; ANALYZE attempts",
        )
        .expect("history");
    let id = "j1500";
    let token = 2i64;
    let statements: [(&str, &str, Vec<&(dyn postgres::types::ToSql + Sync)>); 3] = [
        ("READ_JOB", jobs::READ_JOB, vec![&id]),
        ("READ_ATTEMPTS", jobs::READ_ATTEMPTS, vec![&id]),
        (
            "READ_KEPT_OUTPUT",
            output::READ_KEPT_OUTPUT,
            vec![&id, &token],
        ),
    ];
    let mut plans = Vec::new();
    for (name, sql, params) in statements {
        let rows = conn
            .client
            .query(&format!("EXPLAIN {sql}"), &params)
            .expect("explain");
        let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        plans.push((name, lines.join("\n")));
    }
    let _ = store.drop_schema();
    for (name, text) in plans {
        // An index scan or a bitmap scan of the key; either reads only the job's rows.
        assert!(
            text.contains("using attempts_pkey on attempts")
                || text.contains("Bitmap Index Scan on attempts_pkey"),
            "{name}:\n{text}"
        );
        assert!(!text.contains("Seq Scan on attempts"), "{name}:\n{text}");
    }
}
