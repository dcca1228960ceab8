-- queuectl schema, version 1 (PostgreSQL). Runs with search_path set to the queue's
-- own schema, inside the migration transaction that holds the advisory lock.
-- Times are Unix milliseconds from the database clock (see now_ms below), so hosts
-- with skewed clocks agree on leases and backoff. `seq` orders jobs by creation;
-- `id` is what users see.

-- The one clock every statement uses: the transaction's start time on the server.
-- A plain SQL function that is STABLE gets inlined, so `next_run_at <= now_ms()` can
-- still use the index below.
CREATE FUNCTION now_ms() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE schema_version (
    -- A single row: the boolean key cannot hold a second one.
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);

-- fillfactor 80: every job row is updated several times (claim, a lease renewal on
-- every heartbeat, finish). Renewals touch only lease_expires_at, which no index or
-- index predicate covers, so they can be HOT updates, but only if the new row
-- version fits on the same page; the 20% left free keeps room for that, so the
-- heartbeat traffic of long jobs neither grows the indexes nor spreads bloat.
CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text   COLLATE "C" NOT NULL,
    command          text   NOT NULL,
    cwd              text   NOT NULL,
    state            text   NOT NULL,
    attempts         bigint NOT NULL DEFAULT 0,
    max_retries      bigint NOT NULL,
    interruptions    bigint NOT NULL DEFAULT 0,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    next_run_at      bigint NOT NULL,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    worker_id        text   COLLATE "C",
    started_at       bigint,
    finished_at      bigint,
    exit_code        bigint,
    last_error       text,
    CONSTRAINT jobs_id_key UNIQUE (id)
) WITH (fillfactor = 80);

-- Ids are compared byte by byte (COLLATE "C"): they are identifiers, not prose, and
-- locale-aware comparison showed up in claim and finish profiles.
-- Only partial indexes on state, as on SQLite: each holds the jobs of one phase, so
-- claims and finishes never maintain an index that grows with history.
-- The claim path reads only this one, which holds nothing but waiting jobs.
CREATE INDEX jobs_ready ON jobs (next_run_at, seq) WHERE state IN ('pending', 'failed');
-- Recovery and `worker list` look at running jobs only.
CREATE INDEX jobs_running ON jobs (worker_id) WHERE state = 'processing';
-- The dead letter queue.
CREATE INDEX jobs_dead ON jobs (seq) WHERE state = 'dead';

-- One row per finished or interrupted attempt; `lease_token` numbers a job's runs.
CREATE TABLE attempts (
    job_id      text   COLLATE "C" NOT NULL,
    lease_token bigint NOT NULL,
    worker_id   text,
    started_at  bigint,
    finished_at bigint NOT NULL,
    outcome     text   NOT NULL,
    exit_code   bigint,
    error       text,
    output_tail text,
    PRIMARY KEY (job_id, lease_token)
);

CREATE TABLE workers (
    id             text   COLLATE "C" PRIMARY KEY,
    host           text   NOT NULL,
    pid            bigint NOT NULL,
    pid_start      bigint NOT NULL,
    started_at     bigint NOT NULL,
    heartbeat_at   bigint NOT NULL,
    stop_requested bigint NOT NULL DEFAULT 0,
    ended_at       bigint,
    end_state      text
);

-- Heartbeats and stop checks find a process's live workers; ended workers pile up
-- over time and must not slow that down.
CREATE INDEX workers_live ON workers (host, pid) WHERE ended_at IS NULL;

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
