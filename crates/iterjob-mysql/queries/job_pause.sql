-- `Store::job_pause` of a job locked in the transaction: waiting → paused at once,
-- running → pause requested. `state` is written last (the others read it).
-- ? id
UPDATE iterjob_jobs
SET pause_requested = CASE WHEN state = 'running' THEN TRUE ELSE pause_requested END,
    state = CASE WHEN state IN ('queued', 'retrying') THEN 'paused' ELSE state END
WHERE id = ?
