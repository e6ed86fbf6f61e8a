-- `Store::job_pause`, run in a `BEGIN IMMEDIATE` transaction after the caller
-- checked the state: queued or retrying → paused; running → pause requested.
-- ?1 id
UPDATE iterjob_jobs
SET state = CASE WHEN state IN ('queued', 'retrying') THEN 'paused' ELSE state END,
    pause_requested = CASE WHEN state = 'running' THEN 1 ELSE pause_requested END
WHERE id = ?1
RETURNING *
