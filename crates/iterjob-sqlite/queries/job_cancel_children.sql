-- Cancel of a parent, for its partitions: waiting ones are cancelled, running ones are
-- asked to cancel.
-- ?1 parent id, ?2 now
UPDATE iterjob_jobs
SET finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?2 END,
    pause_requested = CASE WHEN state = 'running' THEN pause_requested ELSE 0 END,
    cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE 0 END,
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END
WHERE parent_id = ?1 AND state IN ('queued', 'retrying', 'paused', 'running')
