-- `Store::job_prunable`: how many top-level jobs `job_prune` would delete.
-- ? state, ? finished before
SELECT COUNT(*) FROM iterjob_jobs
WHERE parent_id IS NULL AND state = ? AND finished_at < ?
