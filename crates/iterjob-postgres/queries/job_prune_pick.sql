-- `Store::job_prune`: the next batch of top-level jobs in a finished state that
-- finished before a time, oldest ids first, locked; rows another pruner holds are
-- skipped, so two pruners never wait for each other.
-- Walked from `after` (the previous batch's last id) along the primary key, never
-- over the rows deleted before (dead until vacuumed).
-- $1 state, $2 finished before, $3 limit, $4 after
SELECT id FROM {schema}.jobs
WHERE id > $4 AND parent_id IS NULL AND state = $1 AND finished_at < $2
ORDER BY id
LIMIT $3
FOR UPDATE SKIP LOCKED
