-- A job's history, newest first.
-- ? id, ? limit
SELECT id, job_id, at, event, state, reason, `cursor`, items_done, error
FROM iterjob_job_events
WHERE job_id = ?
ORDER BY id DESC
LIMIT ?
