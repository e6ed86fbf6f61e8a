-- `Store::job_partition`: the planning run of a parent ends, fenced by its token; the
-- parent stays running without a worker (paused or cancelled if an operator asked
-- meanwhile), or completes when it has no partitions.
-- $1 id, $2 run_token, $3 number of partitions
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET state = CASE
        WHEN $3 = 0 THEN 'completed'
        WHEN j.cancel_requested THEN 'cancelled'
        WHEN j.pause_requested THEN 'paused'
        ELSE 'running'
    END,
    finished_at = CASE WHEN $3 = 0 OR j.cancel_requested THEN now.ms ELSE j.finished_at END,
    pause_requested = FALSE,
    cancel_requested = FALSE,
    run_token = NULL,
    worker_id = NULL,
    lease_expires_at = NULL,
    split_requested = FALSE
FROM now
WHERE j.id = $1 AND j.run_token = $2 AND j.state = 'running' AND j.partitions IS NOT NULL
RETURNING j.id
