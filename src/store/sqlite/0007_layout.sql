-- queuectl schema, version 7 (SQLite): a layout key apart from `seq` (issue 11;
-- DECISIONS.md §24). Jobs are claimed by priority, so a backlog of mixed
-- priorities stored in enqueue order is claimed from all over the table, and each
-- commit copies ~100 scattered pages into the WAL. `jobs` gets a rowid of its own,
-- `pos`, which places the row: a batch of mixed priorities is inserted in the
-- order it will run (`store::layout::BatchLayout`), any other job after the last.
-- `seq` keeps its values and its meaning (enqueue order: `list`, export, the
-- claim's tie-break) as a plain column with a unique index. Attempts are keyed by
-- their job's `pos`, so a round trip's attempt rows land where its jobs are.
--
-- SQLite cannot change a primary key in place: both tables are rebuilt following
-- the documented ALTER TABLE procedure (https://sqlite.org/lang_altertable.html#otheralter),
-- inside the migration's transaction. The store declares no foreign keys,
-- triggers or views; every index of both tables (0001, 0002, 0003, 0005) is
-- created again below, under its old name. Existing jobs take `pos` = `seq`, so
-- the table keeps its order and rows are copied in key order. Attempt rows whose
-- job no longer exists (none should: `clean` deletes a job's attempts with it)
-- have no `pos` and are dropped, as 0004 did.

CREATE TABLE jobs_new (
    -- The rowid: where the row lives. Never shown, never compared across stores.
    pos              INTEGER PRIMARY KEY,
    -- Enqueue order, as before: unique, given out max + 1 in input order.
    seq              INTEGER NOT NULL,
    id               TEXT    NOT NULL UNIQUE,
    command          TEXT    NOT NULL,
    cwd              TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    interruptions    INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    next_run_at      INTEGER NOT NULL,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    worker_id        TEXT,
    started_at       INTEGER,
    finished_at      INTEGER,
    exit_code        INTEGER,
    last_error       TEXT,
    timeout_ms       INTEGER,
    deadline_at      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    priority         INTEGER NOT NULL DEFAULT 0,
    queue            TEXT    NOT NULL DEFAULT 'default',
    run_at           INTEGER,
    unique_key       TEXT,
    env              TEXT,
    blocked_by       INTEGER NOT NULL DEFAULT 0,
    scheduled        INTEGER NOT NULL DEFAULT 0,
    has_dependents   INTEGER NOT NULL DEFAULT 0
);

INSERT INTO jobs_new (pos, seq, id, command, cwd, state, attempts, max_retries,
    interruptions, created_at, updated_at, next_run_at, lease_token, lease_expires_at,
    worker_id, started_at, finished_at, exit_code, last_error, timeout_ms, deadline_at,
    cancel_requested, priority, queue, run_at, unique_key, env, blocked_by, scheduled,
    has_dependents)
SELECT seq, seq, id, command, cwd, state, attempts, max_retries,
    interruptions, created_at, updated_at, next_run_at, lease_token, lease_expires_at,
    worker_id, started_at, finished_at, exit_code, last_error, timeout_ms, deadline_at,
    cancel_requested, priority, queue, run_at, unique_key, env, blocked_by, scheduled,
    has_dependents
FROM jobs ORDER BY seq;

CREATE TABLE attempts_new (
    job_pos      INTEGER NOT NULL,
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
    -- A rowid table: new rows append to it; this key follows the jobs' layout.
    PRIMARY KEY (job_pos, lease_token)
);

INSERT INTO attempts_new (job_pos, lease_token, job_id, worker_id, started_at,
    finished_at, outcome, exit_code, error, output_tail, host, pid, signal, max_rss_kb,
    cpu_ms, output, output_total)
SELECT j.pos, a.lease_token, a.job_id, a.worker_id, a.started_at, a.finished_at,
    a.outcome, a.exit_code, a.error, a.output_tail, a.host, a.pid, a.signal,
    a.max_rss_kb, a.cpu_ms, a.output, a.output_total
FROM attempts a JOIN jobs_new j ON j.seq = a.job_seq
ORDER BY j.pos, a.lease_token;

DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

-- Enqueue order: `list`, export and the listings' tie-breaks read `seq` here.
CREATE UNIQUE INDEX jobs_seq ON jobs (seq);
-- Every index the table had, as 0001-0005 left them (see there for why each is
-- what it is). Rows keyed by `seq` keep listing in enqueue order.
CREATE INDEX jobs_running ON jobs (worker_id) WHERE state = 'processing';
CREATE INDEX jobs_dead ON jobs (seq) WHERE state = 'dead';
CREATE INDEX jobs_cancel ON jobs (seq) WHERE cancel_requested <> 0;
CREATE INDEX jobs_cancelled ON jobs (seq) WHERE state = 'cancelled';
CREATE INDEX jobs_ready ON jobs (priority DESC, next_run_at, seq, state, queue)
    WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0;
CREATE INDEX jobs_scheduled ON jobs (next_run_at, state, blocked_by) WHERE scheduled = 1;
CREATE INDEX jobs_blocked ON jobs (seq, state) WHERE blocked_by > 0;
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'processing', 'failed');
CREATE INDEX jobs_queue ON jobs (queue);
CREATE INDEX attempts_finished ON attempts (finished_at);
