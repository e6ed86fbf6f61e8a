-- `Store::job_prune`: the next batch of top-level jobs in a finished state that
-- finished before a time, oldest ids first (the primary key is walked in order and
-- the walk stops after `limit` matches).
-- Walked from `after` (the previous batch's last id), never over what was deleted.
-- ?1 state, ?2 finished before, ?3 limit, ?4 after
SELECT id FROM iterjob_jobs
WHERE id > ?4 AND parent_id IS NULL AND state = ?1 AND finished_at < ?2
ORDER BY id
LIMIT ?3
