-- `Store::job_prunable`: how many top-level jobs `job_prune` would delete.
-- ?1 state, ?2 finished before
SELECT COUNT(*) FROM iterjob_jobs
WHERE parent_id IS NULL AND state = ?1 AND finished_at < ?2
