-- queuectl schema, version 2 (SQLite): control and visibility. Timeouts, cancel
-- requests, what each attempt's process did, and its output kept in the store.

-- How long one attempt may run (NULL: no limit), and when the running one's time is
-- up, set at claim from the store's clock.
ALTER TABLE jobs ADD COLUMN timeout_ms INTEGER;
ALTER TABLE jobs ADD COLUMN deadline_at INTEGER;
-- 1 while a cancelled job still runs: its worker stops it.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- Every worker round trip looks for cancel requests: this index holds only those
-- (usually none), so looking costs next to nothing. Keyed by `seq`, which never
-- changes, so claims (which bump lease_token) do not touch it.
CREATE INDEX jobs_cancel ON jobs (seq) WHERE cancel_requested <> 0;
-- Cancelled jobs, for `status` counts and `list --state cancelled`: few, so cheap.
CREATE INDEX jobs_cancelled ON jobs (seq) WHERE state = 'cancelled';

ALTER TABLE attempts ADD COLUMN host         TEXT;
ALTER TABLE attempts ADD COLUMN pid          INTEGER;
ALTER TABLE attempts ADD COLUMN signal       INTEGER;
ALTER TABLE attempts ADD COLUMN max_rss_kb   INTEGER;
ALTER TABLE attempts ADD COLUMN cpu_ms       INTEGER;
-- The kept output (at most output-limit bytes), and how much was printed in all.
ALTER TABLE attempts ADD COLUMN output       BLOB;
ALTER TABLE attempts ADD COLUMN output_total INTEGER;
-- Attempts recorded before output was kept: their tail is all there is.
UPDATE attempts SET output = CAST(output_tail AS BLOB),
    output_total = length(CAST(output_tail AS BLOB))
    WHERE output_tail IS NOT NULL;

-- Output of running attempts, shipped by their workers while they run; replaced by
-- attempts.output when the attempt ends.
CREATE TABLE output_chunks (
    job_id      TEXT    NOT NULL,
    lease_token INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    PRIMARY KEY (job_id, lease_token, byte_offset)
);
