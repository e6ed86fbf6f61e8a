-- `Store::job_resume` of a job locked in the transaction: paused → queued, run now;
-- a running job's pending pause request is withdrawn. `state` is written last.
-- ? id
UPDATE iterjob_jobs
SET run_at = CASE WHEN state = 'paused' THEN {now_ms} ELSE run_at END,
    cancel_requested = CASE WHEN state = 'paused' THEN FALSE ELSE cancel_requested END,
    pause_requested = FALSE,
    state = CASE WHEN state = 'paused' THEN 'queued' ELSE state END
WHERE id = ?
