-- Retry of a parent, for its partitions: failed and cancelled ones are queued again
-- from their checkpoints.
-- ?1 parent id, ?2 now
UPDATE iterjob_jobs
SET state = 'queued',
    run_at = ?2,
    attempts = 0,
    crashes = 0,
    finished_at = NULL,
    pause_requested = 0,
    cancel_requested = 0
WHERE parent_id = ?1 AND state IN ('failed', 'cancelled')
