-- `Store::job_checkpoint`, fenced by the run token. Right-hand sides see the old row.
-- ?1 id, ?2 run_token, ?3 now, ?4 lease_expires_at, ?5 cursor (JSON or NULL),
-- ?6 items_done, ?7 items_total, ?8 running_ms
UPDATE iterjob_jobs
SET cursor = ?5,
    crashes = CASE WHEN ?6 > items_done THEN 0 ELSE crashes END,
    items_done = ?6,
    items_total = ?7,
    running_ms = ?8,
    checkpointed_at = ?3,
    lease_expires_at = ?4
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
RETURNING pause_requested, cancel_requested, split_requested
