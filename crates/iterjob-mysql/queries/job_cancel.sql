-- `Store::job_cancel` of a job locked in the transaction: waiting or paused →
-- cancelled at once, running → cancel requested. `state` is written last.
-- ? id
UPDATE iterjob_jobs
SET finished_at = CASE WHEN state = 'running' THEN finished_at ELSE {now_ms} END,
    pause_requested = CASE WHEN state = 'running' THEN pause_requested ELSE FALSE END,
    cancel_requested = CASE WHEN state = 'running' THEN TRUE ELSE FALSE END,
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END
WHERE id = ?
