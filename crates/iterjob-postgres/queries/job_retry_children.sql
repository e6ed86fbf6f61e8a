-- Retry of a parent, for its partitions: failed and cancelled ones are queued again
-- from their checkpoints.
-- $1 parent id
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET state = 'queued',
    run_at = now.ms,
    attempts = 0,
    crashes = 0,
    finished_at = NULL,
    pause_requested = FALSE,
    cancel_requested = FALSE
FROM now
WHERE j.parent_id = $1 AND j.state IN ('failed', 'cancelled')
