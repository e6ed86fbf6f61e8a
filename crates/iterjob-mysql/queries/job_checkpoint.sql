-- `Store::job_checkpoint`, fenced by the run token. `crashes` is written before
-- `items_done`: MySQL evaluates a SET list left to right, later right-hand sides see
-- the new values.
-- ? cursor, ? items_done (twice), ? items_total, ? running_ms, ? lease (ms),
-- ? id, ? run_token
UPDATE iterjob_jobs
SET `cursor` = ?,
    crashes = CASE WHEN ? > items_done THEN 0 ELSE crashes END,
    items_done = ?,
    items_total = ?,
    running_ms = ?,
    checkpointed_at = {now_ms},
    lease_expires_at = {now_ms} + ?
WHERE id = ? AND run_token = ? AND state = 'running'
