-- queuectl schema, version 6 (SQLite): completed jobs per queue counted without
-- reading the jobs table (issue 13; DECISIONS §19). Nothing here changes how jobs
-- or attempts are written: claims and finishes do not touch these tables.
--
-- A completed job is *located* when the attempt of its current lease succeeded and
-- finished at or after stats_rolled.jobs_until: `attempts_finished` finds those
-- (the recent ones) at once. completed_rollup holds, per queue, the completed jobs
-- that are not located; the rollup moves the mark forward (adding what it passes),
-- and `retry`, `clean` and `import` add or take away the jobs they change. So the
-- completed jobs of a queue are its rollup row plus its located jobs.
ALTER TABLE stats_rolled ADD COLUMN jobs_until INTEGER NOT NULL DEFAULT 0;
CREATE TABLE completed_rollup (
    queue TEXT    PRIMARY KEY,
    jobs  INTEGER NOT NULL
);
INSERT INTO completed_rollup (queue, jobs)
    SELECT j.queue, count(*) FROM jobs j
    WHERE j.state = 'completed' AND NOT EXISTS (SELECT 1 FROM attempts a
        WHERE a.job_seq = j.seq AND a.lease_token = j.lease_token
        AND a.outcome = 'succeeded' AND a.finished_at >= 0)
    GROUP BY j.queue;
