-- `Store::job_resume`, in the transaction that locked the job and checked its state:
-- paused → queued (run now); running → pause request cleared.
-- $1 id
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET run_at = CASE WHEN j.state = 'paused' THEN now.ms ELSE j.run_at END,
    cancel_requested = CASE WHEN j.state = 'paused' THEN FALSE ELSE j.cancel_requested END,
    state = CASE WHEN j.state = 'paused' THEN 'queued' ELSE j.state END,
    pause_requested = FALSE
FROM now
WHERE j.id = $1
RETURNING j.*
