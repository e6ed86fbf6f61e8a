-- `Store::job_note_failure`, fenced by the run token: where and how the run failed.
-- ? the failure (JSON text), ? id, ? run_token
UPDATE iterjob_jobs
SET last_failure = ?
WHERE id = ? AND run_token = ? AND state = 'running'
