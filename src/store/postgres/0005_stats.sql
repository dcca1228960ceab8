-- queuectl schema, version 5 (PostgreSQL): stats and metrics (issue 13). Only
-- indexes and tables of its own; nothing here changes how jobs or attempts are
-- written. Runs with search_path set to the queue's schema, in the migration
-- transaction.

-- `stats` windows and the metrics rollup read attempts by when they finished.
CREATE INDEX attempts_finished ON attempts (finished_at);
-- `metrics` counts each queue's jobs (completed ones are the total less the
-- others) from this index alone. A job's queue never changes, so only enqueue and
-- clean maintain it.
CREATE INDEX jobs_queue ON jobs (queue);

-- The rollup of the attempt history (see src/store/stats.rs): per kind ('duration'
-- for every attempt, 'pickup' for first attempts), queue, outcome ('' for pickups)
-- and histogram bucket (-1: an attempt without a recorded start), the attempts
-- that finished before stats_rolled.until, and the sum of their milliseconds.
CREATE TABLE stats_rollup (
    kind     text   NOT NULL,
    queue    text   COLLATE "C" NOT NULL,
    outcome  text   NOT NULL,
    bucket   bigint NOT NULL,
    attempts bigint NOT NULL,
    sum_ms   bigint NOT NULL,
    PRIMARY KEY (kind, queue, outcome, bucket)
);
CREATE TABLE stats_rolled (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    until bigint  NOT NULL
);
INSERT INTO stats_rolled (one, until) VALUES (true, 0);
