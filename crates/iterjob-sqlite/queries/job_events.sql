-- `Store::job_events`: a job's history, newest first.
-- ?1 job id, ?2 limit
SELECT id, job_id, at, event, state, reason, cursor, items_done, error
FROM iterjob_job_events
WHERE job_id = ?1
ORDER BY id DESC
LIMIT ?2
