-- `Store::job_cancel`, run in a `BEGIN IMMEDIATE` transaction after the caller
-- checked the state: queued, retrying or paused → cancelled; running → cancel requested.
-- ?1 id, ?2 now
UPDATE iterjob_jobs
SET finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?2 END,
    pause_requested = CASE WHEN state = 'running' THEN pause_requested ELSE 0 END,
    cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE 0 END,
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END
WHERE id = ?1
RETURNING *
