-- `Store::job_pause`, in the transaction that locked the job and checked its state:
-- queued or retrying → paused; running → pause requested.
-- $1 id
UPDATE {schema}.jobs
SET state = CASE WHEN state IN ('queued', 'retrying') THEN 'paused' ELSE state END,
    pause_requested = CASE WHEN state = 'running' THEN TRUE ELSE pause_requested END
WHERE id = $1
RETURNING *
