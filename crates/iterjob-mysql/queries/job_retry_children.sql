-- A split parent's retry reaches its failed and cancelled partitions.
-- ? parent id
UPDATE iterjob_jobs
SET state = 'queued',
    run_at = {now_ms},
    attempts = 0,
    crashes = 0,
    finished_at = NULL,
    pause_requested = FALSE,
    cancel_requested = FALSE
WHERE parent_id = ? AND state IN ('failed', 'cancelled')
