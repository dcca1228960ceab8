-- queuectl schema, version 2 (PostgreSQL): control and visibility. Timeouts, cancel
-- requests, what each attempt's process did, and its output kept in the store.
-- Runs with search_path set to the queue's schema, in the migration transaction.

-- How long one attempt may run (NULL: no limit), and when the running one's time is
-- up, set at claim from the database clock.
ALTER TABLE jobs ADD COLUMN timeout_ms bigint;
ALTER TABLE jobs ADD COLUMN deadline_at bigint;
-- true while a cancelled job still runs: its worker stops it.
ALTER TABLE jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
-- Every worker round trip looks for cancel requests: this index holds only those
-- (usually none), so looking costs next to nothing. Keyed by `seq`, which never
-- changes, so claims (which bump lease_token) do not touch it.
CREATE INDEX jobs_cancel ON jobs (seq) WHERE cancel_requested;
-- Cancelled jobs, for `status` counts and `list --state cancelled`: few, so cheap.
CREATE INDEX jobs_cancelled ON jobs (seq) WHERE state = 'cancelled';

ALTER TABLE attempts ADD COLUMN host         text;
ALTER TABLE attempts ADD COLUMN pid          bigint;
ALTER TABLE attempts ADD COLUMN signal       bigint;
ALTER TABLE attempts ADD COLUMN max_rss_kb   bigint;
ALTER TABLE attempts ADD COLUMN cpu_ms       bigint;
-- The kept output (at most output-limit bytes), and how much was printed in all.
ALTER TABLE attempts ADD COLUMN output       bytea;
ALTER TABLE attempts ADD COLUMN output_total bigint;
-- Attempts recorded before output was kept: their tail is all there is.
UPDATE attempts SET output = convert_to(output_tail, 'UTF8'),
    output_total = octet_length(convert_to(output_tail, 'UTF8'))
    WHERE output_tail IS NOT NULL;

-- Output of running attempts, shipped by their workers while they run; replaced by
-- attempts.output when the attempt ends.
CREATE TABLE output_chunks (
    job_id      text   COLLATE "C" NOT NULL,
    lease_token bigint NOT NULL,
    byte_offset bigint NOT NULL,
    data        bytea  NOT NULL,
    PRIMARY KEY (job_id, lease_token, byte_offset)
);
