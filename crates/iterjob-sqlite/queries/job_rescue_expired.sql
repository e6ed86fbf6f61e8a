-- `Store::job_rescue_expired`: running jobs whose lease expired (or that have none)
-- get a crash and an attempt; they fail when crashes reach ?2 or attempts reach
-- max_attempts, and are queued again (run now) otherwise. Right-hand sides see the
-- old row, hence the `+ 1` everywhere.
-- ?1 now, ?2 max_crashes
UPDATE iterjob_jobs
SET crashes = crashes + 1,
    attempts = attempts + 1,
    state = CASE
        WHEN crashes + 1 >= ?2 OR attempts + 1 >= max_attempts THEN 'failed'
        ELSE 'queued'
    END,
    last_error = CASE
        WHEN crashes + 1 >= ?2 THEN
            'worker lost its lease ' || (crashes + 1) || ' times without progress (it crashed, '
            || 'was killed, or hung); the job may be crashing its worker'
        WHEN attempts + 1 >= max_attempts THEN
            'worker lost its lease (it crashed, was killed, or hung) and the job has used all '
            || max_attempts || ' attempts'
        ELSE last_error
    END,
    finished_at = CASE
        WHEN crashes + 1 >= ?2 OR attempts + 1 >= max_attempts THEN ?1
        ELSE finished_at
    END,
    pause_requested = CASE
        WHEN crashes + 1 >= ?2 OR attempts + 1 >= max_attempts THEN 0
        ELSE pause_requested
    END,
    cancel_requested = CASE
        WHEN crashes + 1 >= ?2 OR attempts + 1 >= max_attempts THEN 0
        ELSE cancel_requested
    END,
    run_at = CASE
        WHEN crashes + 1 >= ?2 OR attempts + 1 >= max_attempts THEN run_at
        ELSE ?1
    END,
    split_requested = 0,
    run_token = NULL,
    worker_id = NULL,
    lease_expires_at = NULL
WHERE state = 'running'
  AND run_token IS NOT NULL -- a split parent runs without a worker
  AND (lease_expires_at IS NULL OR lease_expires_at < ?1)
RETURNING id, state, last_error
