-- `Store::job_resume`, run in a `BEGIN IMMEDIATE` transaction after the caller
-- checked the state: paused → queued (run now); running → pause request cleared.
-- ?1 id, ?2 now
UPDATE iterjob_jobs
SET run_at = CASE WHEN state = 'paused' THEN ?2 ELSE run_at END,
    cancel_requested = CASE WHEN state = 'paused' THEN 0 ELSE cancel_requested END,
    state = CASE WHEN state = 'paused' THEN 'queued' ELSE state END,
    pause_requested = 0
WHERE id = ?1
RETURNING *
