-- `Store::job_checkpoint`, fenced by the run token. Right-hand sides see the old row.
-- Changes no indexed column, so it is a HOT update.
-- $1 id, $2 run_token, $3 lease (ms), $4 cursor (JSON text or NULL), $5 items_done,
-- $6 items_total, $7 running_ms
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET cursor = $4::jsonb,
    crashes = CASE WHEN $5 > j.items_done THEN 0 ELSE j.crashes END,
    items_done = $5,
    items_total = $6,
    running_ms = $7,
    checkpointed_at = now.ms,
    lease_expires_at = now.ms + $3
FROM now
WHERE j.id = $1 AND j.run_token = $2 AND j.state = 'running'
RETURNING j.pause_requested, j.cancel_requested, j.split_requested
