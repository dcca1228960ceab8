-- queuectl schema, version 5 (PostgreSQL): stats and metrics (issue 13). Only
-- indexes and tables of its own; nothing here changes how jobs or attempts are
-- written. Runs with search_path set to the queue's schema, in the migration
-- transaction.

-- `stats` windows and the metrics rollup read attempts by when they finished.
-- BRIN, not B-tree: attempts are appended in about the order they finish, so block
-- ranges summarise them well, and inserting an attempt costs next to nothing (a
-- B-tree here, with the per-queue index SQLite has, cost `bench --mode noop` 13%:
-- BENCHMARKS.md, issue #13).
CREATE INDEX attempts_finished ON attempts USING brin (finished_at);
-- No index on jobs (queue), unlike SQLite: every claim and finish is an update
-- PostgreSQL cannot do in place (it changes indexed columns), so it adds an entry
-- to every index of the table, this one included, queue unchanged or not. The
-- per-queue totals of `metrics` read the table instead.

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
