-- `Store::job_split`: a checkpoint that clears the split request and, given new
-- parameters, narrows the partition to them (its total is counted again). Fenced by the
-- run token. Right-hand sides see the old row.
-- ?1 id, ?2 run_token, ?3 now, ?4 lease_expires_at, ?5 cursor (JSON or NULL),
-- ?6 items_done, ?7 items_total, ?8 running_ms, ?9 kept params (JSON, NULL: no split)
UPDATE iterjob_jobs
SET cursor = ?5,
    crashes = CASE WHEN ?6 > items_done THEN 0 ELSE crashes END,
    items_done = ?6,
    items_total = CASE WHEN ?9 IS NULL THEN ?7 ELSE NULL END,
    running_ms = ?8,
    checkpointed_at = ?3,
    lease_expires_at = ?4,
    split_requested = 0,
    params = COALESCE(?9, params)
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
RETURNING parent_id
