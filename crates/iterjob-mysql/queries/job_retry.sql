-- `Store::job_retry` of a failed or cancelled job locked in the transaction: queued,
-- run now, attempts and crashes reset, `last_error` kept.
-- ? id
UPDATE iterjob_jobs
SET state = 'queued',
    run_at = {now_ms},
    attempts = 0,
    crashes = 0,
    finished_at = NULL,
    pause_requested = FALSE,
    cancel_requested = FALSE
WHERE id = ?
