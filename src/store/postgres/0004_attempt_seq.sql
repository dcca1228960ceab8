-- queuectl schema, version 4 (PostgreSQL): attempts keyed by their job's `seq`.
-- Runs with search_path set to the queue's schema, in the migration transaction.
-- Job ids are random (DECISIONS.md §15), so a key that starts with the id puts each
-- finished run's attempt row on a random leaf page of its index; `seq` only grows,
-- so keyed by it the rows of a round trip land together at the index's right edge
-- (DECISIONS.md §17). `job_id` stays, unindexed, for anyone reading the table.

ALTER TABLE attempts ADD COLUMN job_seq bigint;
UPDATE attempts a SET job_seq = j.seq FROM jobs j WHERE j.id = a.job_id;
-- Attempt rows whose job no longer exists (none should: `clean` deletes a job's
-- attempts with it, in one statement) have no `seq` to be keyed by.
DELETE FROM attempts WHERE job_seq IS NULL;
ALTER TABLE attempts ALTER COLUMN job_seq SET NOT NULL;
-- The key 0001_init.sql declared inline, which PostgreSQL names `attempts_pkey`.
ALTER TABLE attempts DROP CONSTRAINT attempts_pkey;
ALTER TABLE attempts ADD CONSTRAINT attempts_pkey PRIMARY KEY (job_seq, lease_token);
