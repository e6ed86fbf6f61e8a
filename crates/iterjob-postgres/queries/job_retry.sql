-- `Store::job_retry`, in the transaction that locked the job and checked its state
-- (failed or cancelled); a unique key held by another unfinished job fails it.
-- $1 id
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
WHERE j.id = $1
RETURNING j.*
