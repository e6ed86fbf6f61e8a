-- `Store::job_heartbeat`, fenced by the run token.
-- ?1 id, ?2 run_token, ?3 lease_expires_at
UPDATE iterjob_jobs
SET lease_expires_at = ?3
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
RETURNING pause_requested, cancel_requested, split_requested
