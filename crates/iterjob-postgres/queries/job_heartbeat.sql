-- `Store::job_heartbeat`, fenced by the run token. Changes no indexed column, so it
-- is a HOT update.
-- $1 id, $2 run_token, $3 lease (ms)
UPDATE {schema}.jobs
SET lease_expires_at = {now_ms} + $3
WHERE id = $1 AND run_token = $2 AND state = 'running'
RETURNING pause_requested, cancel_requested, split_requested
