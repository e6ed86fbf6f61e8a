-- `Store::job_release`, fenced by the run token. Right-hand sides see the old row.
-- ?1 id, ?2 run_token, ?3 now, ?4 with progress (0/1), ?5 cursor (JSON or NULL),
-- ?6 items_done, ?7 items_total, ?8 running_ms, ?9 new state,
-- ?10 run_at (NULL: unchanged), ?11 attempts to add, ?12 interruptions to add,
-- ?13 last_error (NULL: unchanged), ?14 finished (0/1), ?15 clear requests (0/1)
UPDATE iterjob_jobs
SET cursor          = CASE WHEN ?4 THEN ?5 ELSE cursor END,
    crashes         = CASE WHEN ?4 AND ?6 > items_done THEN 0 ELSE crashes END,
    items_done      = CASE WHEN ?4 THEN ?6 ELSE items_done END,
    items_total     = CASE WHEN ?4 THEN ?7 ELSE items_total END,
    running_ms      = CASE WHEN ?4 THEN ?8 ELSE running_ms END,
    checkpointed_at = CASE WHEN ?4 THEN ?3 ELSE checkpointed_at END,
    state           = ?9,
    run_at          = COALESCE(?10, run_at),
    attempts        = attempts + ?11,
    interruptions   = interruptions + ?12,
    last_error      = COALESCE(?13, last_error),
    finished_at     = CASE WHEN ?14 THEN ?3 ELSE finished_at END,
    pause_requested = CASE WHEN ?15 THEN 0 ELSE pause_requested END,
    cancel_requested = CASE WHEN ?15 THEN 0 ELSE cancel_requested END,
    split_requested = 0,
    run_token       = NULL,
    worker_id       = NULL,
    lease_expires_at = NULL
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
RETURNING parent_id, state
