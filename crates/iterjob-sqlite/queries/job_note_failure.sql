-- `Store::job_note_failure`, fenced by the run token: where and how the run failed.
-- ?1 id, ?2 run_token, ?3 the failure (JSON)
UPDATE iterjob_jobs
SET last_failure = ?3
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
