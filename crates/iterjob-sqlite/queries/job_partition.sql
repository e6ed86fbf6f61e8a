-- `Store::job_partition`: the planning run of a parent ends, fenced by its token; the
-- parent stays running without a worker (paused or cancelled if an operator asked
-- meanwhile), or completes when it has no partitions.
-- ?1 id, ?2 run_token, ?3 now, ?4 number of partitions
UPDATE iterjob_jobs
SET state = CASE
        WHEN ?4 = 0 THEN 'completed'
        WHEN cancel_requested THEN 'cancelled'
        WHEN pause_requested THEN 'paused'
        ELSE 'running'
    END,
    finished_at = CASE WHEN ?4 = 0 OR cancel_requested THEN ?3 ELSE finished_at END,
    pause_requested = 0,
    cancel_requested = 0,
    run_token = NULL,
    worker_id = NULL,
    lease_expires_at = NULL,
    split_requested = 0
WHERE id = ?1 AND run_token = ?2 AND state = 'running' AND partitions IS NOT NULL
