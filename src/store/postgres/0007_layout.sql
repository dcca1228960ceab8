-- queuectl schema, version 7 (PostgreSQL): nothing to change. Version 7 gives
-- SQLite's `jobs` a layout key apart from `seq` (issue 11; DECISIONS.md §24);
-- PostgreSQL places a row wherever it is inserted, so `postgres::jobs::enqueue_in`
-- already writes a batch of mixed priorities in run order with its `seq`s
-- unchanged. The version is counted anyway, so both stores of one release report
-- the same schema version.
SELECT 1;
