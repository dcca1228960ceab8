-- queuectl schema, version 1 (SQLite).
-- Times are Unix milliseconds. `seq` orders jobs by creation and keeps inserts
-- append-only; `id` is what users see.

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
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
    last_error       TEXT
);

-- Only partial indexes on state: each holds the jobs of one phase, so the hot path
-- never touches an index that grows with history, and finishing a job removes it
-- from the small indexes instead of rewriting a large one.
-- The claim path reads only this one, which holds nothing but waiting jobs
-- (`state` makes it covering for `status` counts).
CREATE INDEX jobs_ready ON jobs (next_run_at, seq, state) WHERE state IN ('pending', 'failed');
-- Recovery and `worker list` look at running jobs only.
CREATE INDEX jobs_running ON jobs (worker_id) WHERE state = 'processing';
-- The dead letter queue.
CREATE INDEX jobs_dead ON jobs (seq) WHERE state = 'dead';
-- Completed jobs need no index: they are the bulk of the table, so scanning it in
-- `seq` order finds them at once.

-- One row per finished or interrupted attempt; `lease_token` numbers a job's runs.
CREATE TABLE attempts (
    job_id      TEXT    NOT NULL,
    lease_token INTEGER NOT NULL,
    worker_id   TEXT,
    started_at  INTEGER,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    exit_code   INTEGER,
    error       TEXT,
    output_tail TEXT,
    PRIMARY KEY (job_id, lease_token)
);

CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    pid_start      INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    ended_at       INTEGER,
    end_state      TEXT
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
