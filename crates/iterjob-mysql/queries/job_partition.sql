-- `Store::job_partition`: the planning run hands its parent over to the partitions,
-- fenced by its token. With no partitions the parent completes at once; a pending
-- cancel or pause request takes effect now. The requests are read before they are
-- cleared (MySQL's SET list runs left to right).
-- ? children count (twice), ? id, ? run_token
UPDATE iterjob_jobs
SET finished_at = CASE WHEN ? = 0 OR cancel_requested THEN {now_ms} ELSE finished_at END,
    state = CASE
        WHEN ? = 0 THEN 'completed'
        WHEN cancel_requested THEN 'cancelled'
        WHEN pause_requested THEN 'paused'
        ELSE 'running'
    END,
    pause_requested = FALSE,
    cancel_requested = FALSE,
    run_token = NULL,
    worker_id = NULL,
    lease_expires_at = NULL,
    split_requested = FALSE
WHERE id = ? AND run_token = ? AND state = 'running' AND `partitions` IS NOT NULL
