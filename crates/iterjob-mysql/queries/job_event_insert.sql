-- Records an event for a job as its row stands now in the caller's transaction.
-- ? event, ? reason, ? error, ? id
INSERT INTO iterjob_job_events (job_id, at, event, state, reason, `cursor`, items_done, error)
SELECT id, {now_ms}, ?, state, ?, `cursor`, items_done, ?
FROM iterjob_jobs
WHERE id = ?
