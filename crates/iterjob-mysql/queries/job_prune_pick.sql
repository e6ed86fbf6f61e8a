-- `Store::job_prune`: the next batch of top-level jobs in a finished state that
-- finished before a time, oldest ids first, locked; rows another pruner holds are
-- skipped, so two pruners never wait for each other.
-- Walked from `after` (the previous batch's last id), never over what was deleted.
-- ? after, ? state, ? finished before, ? limit
SELECT id FROM iterjob_jobs
WHERE id > ? AND parent_id IS NULL AND state = ? AND finished_at < ?
ORDER BY id
LIMIT ?
FOR UPDATE SKIP LOCKED
