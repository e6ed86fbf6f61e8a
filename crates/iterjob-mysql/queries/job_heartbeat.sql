-- `Store::job_heartbeat`, fenced by the run token.
-- ? lease (ms), ? id, ? run_token
UPDATE iterjob_jobs
SET lease_expires_at = {now_ms} + ?
WHERE id = ? AND run_token = ? AND state = 'running'
