-- `Store::job_split`: a checkpoint that clears `split_requested` and, given new
-- parameters, narrows the partition to them (its total is counted again).
-- `items_total` reads the old params before `params` is written; `crashes` reads
-- the old `items_done`.
-- ? cursor, ? items_done (twice), ? keep params (twice), ? items_total, ? running_ms,
-- ? lease (ms), ? keep params, ? id, ? run_token
UPDATE iterjob_jobs
SET `cursor` = ?,
    crashes = CASE WHEN ? > items_done THEN 0 ELSE crashes END,
    items_done = ?,
    items_total = CASE WHEN ? IS NULL THEN ? ELSE NULL END,
    running_ms = ?,
    checkpointed_at = {now_ms},
    lease_expires_at = {now_ms} + ?,
    split_requested = FALSE,
    params = COALESCE(?, params)
WHERE id = ? AND run_token = ? AND state = 'running'
