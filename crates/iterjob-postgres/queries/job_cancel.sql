-- `Store::job_cancel`, in the transaction that locked the job and checked its state:
-- queued, retrying or paused → cancelled; running → cancel requested.
-- $1 id
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE now.ms END,
    pause_requested = CASE WHEN j.state = 'running' THEN j.pause_requested ELSE FALSE END,
    cancel_requested = CASE WHEN j.state = 'running' THEN TRUE ELSE FALSE END,
    state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END
FROM now
WHERE j.id = $1
RETURNING j.*
