-- `Store::job_release`, fenced by the run token. MySQL evaluates a SET list left to
-- right (later right-hand sides see the new values), so every column is written
-- after the assignments that read its old value. The job's parent (0: none) comes
-- back as the statement's LAST_INSERT_ID, so a release is one statement: no
-- transaction and no second round trip unless it also writes a history event.
-- ? with progress (bool), ? cursor, ? with progress, ? items_done, ? with progress,
-- ? items_done, ? with progress, ? items_total, ? with progress, ? running_ms,
-- ? with progress, ? new state, ? run_at (NULL: unchanged), ? attempts to add,
-- ? interruptions to add, ? last_error (NULL: unchanged), ? finished (bool),
-- ? clear requests (bool), ? clear requests, ? id, ? run_token
UPDATE iterjob_jobs
SET `cursor`         = CASE WHEN ? THEN ? ELSE `cursor` END,
    crashes          = CASE WHEN ? AND ? > items_done THEN 0 ELSE crashes END,
    items_done       = CASE WHEN ? THEN ? ELSE items_done END,
    items_total      = CASE WHEN ? THEN ? ELSE items_total END,
    running_ms       = CASE WHEN ? THEN ? ELSE running_ms END,
    checkpointed_at  = CASE WHEN ? THEN {now_ms} ELSE checkpointed_at END,
    state            = ?,
    run_at           = COALESCE(?, run_at),
    attempts         = attempts + ?,
    interruptions    = interruptions + ?,
    last_error       = COALESCE(?, last_error),
    finished_at      = CASE WHEN ? THEN {now_ms} ELSE finished_at END,
    pause_requested  = CASE WHEN ? THEN FALSE ELSE pause_requested END,
    cancel_requested = CASE WHEN ? THEN FALSE ELSE cancel_requested END,
    split_requested  = 0 * LAST_INSERT_ID(COALESCE(parent_id, 0)),
    run_token        = NULL,
    worker_id        = NULL,
    lease_expires_at = NULL
WHERE id = ? AND run_token = ? AND state = 'running'
