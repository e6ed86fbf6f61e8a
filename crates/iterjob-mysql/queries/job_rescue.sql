-- `Store::job_rescue_expired`, second statement: each picked job gets a crash and an
-- attempt; it fails when either runs out, else goes back to `queued`. `state`,
-- `last_error`, `finished_at`, the requests and `run_at` read the old `crashes` and
-- `attempts`, so those two are written last (MySQL's SET list runs left to right).
-- ? max_crashes (six times), ? ids…
UPDATE iterjob_jobs
SET state = CASE
        WHEN crashes + 1 >= ? OR attempts + 1 >= max_attempts THEN 'failed'
        ELSE 'queued'
    END,
    last_error = CASE
        WHEN crashes + 1 >= ? THEN
            CONCAT('worker lost its lease ', crashes + 1, ' times without progress (it crashed, ',
                   'was killed, or hung); the job may be crashing its worker')
        WHEN attempts + 1 >= max_attempts THEN
            CONCAT('worker lost its lease (it crashed, was killed, or hung) and the job has used all ',
                   max_attempts, ' attempts')
        ELSE last_error
    END,
    finished_at = CASE
        WHEN crashes + 1 >= ? OR attempts + 1 >= max_attempts THEN {now_ms}
        ELSE finished_at
    END,
    pause_requested = CASE
        WHEN crashes + 1 >= ? OR attempts + 1 >= max_attempts THEN FALSE
        ELSE pause_requested
    END,
    cancel_requested = CASE
        WHEN crashes + 1 >= ? OR attempts + 1 >= max_attempts THEN FALSE
        ELSE cancel_requested
    END,
    run_at = CASE
        WHEN crashes + 1 >= ? OR attempts + 1 >= max_attempts THEN run_at
        ELSE {now_ms}
    END,
    crashes = crashes + 1,
    attempts = attempts + 1,
    split_requested = FALSE,
    run_token = NULL,
    worker_id = NULL,
    lease_expires_at = NULL
WHERE id IN ({ids})
