-- queuectl schema, version 4 (SQLite): attempts keyed by their job's `seq`.
-- Job ids are random (DECISIONS.md §15), so a key that starts with the id puts each
-- finished run's attempt row on a random leaf page of its index; `seq` only grows,
-- so keyed by it the rows of a round trip land together at the index's right edge
-- (DECISIONS.md §17). `job_id` stays, unindexed, for anyone reading the table.
--
-- SQLite cannot change a primary key in place: the table is rebuilt following the
-- documented ALTER TABLE procedure (https://sqlite.org/lang_altertable.html#otheralter).
-- It runs inside the migration's transaction; the store declares no foreign keys,
-- triggers or views, and `attempts` has no index besides its key, so no step is
-- left to redo. Attempt rows whose job no longer exists (none should: `clean`
-- deletes a job's attempts with it, in one transaction) have no `seq` to be keyed
-- by and are dropped. Rows are copied in key order, so the new table and its
-- index are written in order.

CREATE TABLE attempts_new (
    job_seq      INTEGER NOT NULL,
    lease_token  INTEGER NOT NULL,
    job_id       TEXT    NOT NULL,
    worker_id    TEXT,
    started_at   INTEGER,
    finished_at  INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    exit_code    INTEGER,
    error        TEXT,
    output_tail  TEXT,
    host         TEXT,
    pid          INTEGER,
    signal       INTEGER,
    max_rss_kb   INTEGER,
    cpu_ms       INTEGER,
    -- The kept output (at most output-limit bytes), and how much was printed in all.
    output       BLOB,
    output_total INTEGER,
    -- A rowid table: new rows append to it, and to this key, as seq grows.
    PRIMARY KEY (job_seq, lease_token)
);

INSERT INTO attempts_new (job_seq, lease_token, job_id, worker_id, started_at,
    finished_at, outcome, exit_code, error, output_tail, host, pid, signal, max_rss_kb,
    cpu_ms, output, output_total)
SELECT j.seq, a.lease_token, a.job_id, a.worker_id, a.started_at, a.finished_at,
    a.outcome, a.exit_code, a.error, a.output_tail, a.host, a.pid, a.signal,
    a.max_rss_kb, a.cpu_ms, a.output, a.output_total
FROM attempts a JOIN jobs j ON j.id = a.job_id
ORDER BY j.seq, a.lease_token;

DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
