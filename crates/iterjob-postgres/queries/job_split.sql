-- `Store::job_split`: a checkpoint that clears the split request and, given new
-- parameters, narrows the partition to them (its total is counted again). Fenced by the
-- run token. Right-hand sides see the old row.
-- $1 id, $2 run_token, $3 lease (ms), $4 cursor (JSON text or NULL), $5 items_done,
-- $6 items_total, $7 running_ms, $8 kept params (JSON text, NULL: no split)
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET cursor = $4::jsonb,
    crashes = CASE WHEN $5 > j.items_done THEN 0 ELSE j.crashes END,
    items_done = $5,
    items_total = CASE WHEN $8::text IS NULL THEN $6 ELSE NULL END,
    running_ms = $7,
    checkpointed_at = now.ms,
    lease_expires_at = now.ms + $3,
    split_requested = FALSE,
    params = COALESCE($8::jsonb, j.params)
FROM now
WHERE j.id = $1 AND j.run_token = $2 AND j.state = 'running'
RETURNING j.parent_id
