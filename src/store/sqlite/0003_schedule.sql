-- queuectl schema, version 3 (SQLite): scheduling. Priorities, delays, queues with
-- pause and concurrency limits, dependencies, unique jobs, per-job environment and
-- recurring (cron) jobs.

-- Higher runs first (-1000..1000).
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- The queue a job belongs to; workers may serve only some queues.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
-- The time asked for with --run-at or --delay (NULL: at once). next_run_at starts
-- there; this keeps what the user asked for.
ALTER TABLE jobs ADD COLUMN run_at INTEGER;
-- While a job with this key is unfinished, enqueueing the key again adds nothing.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
-- Extra environment variables for the command, a JSON object (NULL: none).
ALTER TABLE jobs ADD COLUMN env TEXT;
-- How many of the jobs named by `after` are not completed yet: a job runs only at 0.
ALTER TABLE jobs ADD COLUMN blocked_by INTEGER NOT NULL DEFAULT 0;
-- Set while the job waits for its time (a delay, a run_at, a retry's backoff): it
-- is then in jobs_scheduled, not jobs_ready, and a worker moves it over once due
-- (PROMOTE_DUE). So the claim needs no time filter, and jobs waiting for later
-- never slow the claim of ready ones, whatever their priority.
ALTER TABLE jobs ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0;
-- Jobs written by earlier versions that wait for a retry's backoff.
UPDATE jobs SET scheduled = 1 WHERE state IN ('pending', 'failed') AND next_run_at > CAST(unixepoch('subsec') * 1000 AS INTEGER);
-- Whether some job names this one in `after`, so finishing it must look for them.
ALTER TABLE jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;

-- The claim reads this index alone: ready jobs in run order (highest priority, then
-- ready longest, then enqueue order), with state and queue so that skipping a
-- paused or full queue needs no table lookup. Jobs waiting for `after` jobs are not
-- in it.
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, next_run_at, seq, state, queue)
    WHERE state IN ('pending', 'failed') AND blocked_by = 0 AND scheduled = 0;
-- Jobs waiting for their time, by when it comes, and (next) jobs waiting for the
-- jobs they run after. Their predicates leave `state` out on purpose: a claim
-- changes only `state`, so it maintains neither index (the flags are 0 on every job
-- a claim can see, and are cleared whenever a job stops waiting).
CREATE INDEX jobs_scheduled ON jobs (next_run_at, state, blocked_by) WHERE scheduled = 1;
-- Pending jobs still waiting for their `after` jobs.
CREATE INDEX jobs_blocked ON jobs (seq, state) WHERE blocked_by > 0;
-- One unfinished job per unique key, enforced by the store for every writer.
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'processing', 'failed');

-- `after` edges: job_id runs only once after_id has completed.
CREATE TABLE job_dependencies (
    job_id   TEXT NOT NULL,
    after_id TEXT NOT NULL,
    PRIMARY KEY (job_id, after_id)
);
CREATE INDEX job_dependencies_after ON job_dependencies (after_id);

-- Queues with settings of their own; a queue without a row is running, unlimited.
CREATE TABLE queues (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    -- At most this many of the queue's jobs run at once (NULL: no limit).
    concurrency INTEGER
);

-- Recurring jobs: every run is enqueued from `job` (a job JSON object) by a worker,
-- once per tick, keyed `NAME@tick`.
CREATE TABLE cron (
    name        TEXT    PRIMARY KEY,
    schedule    TEXT    NOT NULL,
    tz          TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    -- The next tick to enqueue, Unix ms.
    next_run_at INTEGER NOT NULL,
    last_run_at INTEGER,
    created_at  INTEGER NOT NULL
);
