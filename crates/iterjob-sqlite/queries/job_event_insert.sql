-- A history entry for job ?1, copying its state, cursor and items from the row as
-- the same transaction just left it (see migrations/0002_job_events.sql).
-- ?1 job id, ?2 now, ?3 event, ?4 reason (or NULL), ?5 error (or NULL)
INSERT INTO iterjob_job_events (job_id, at, event, state, reason, cursor, items_done, error)
SELECT id, ?2, ?3, state, ?4, cursor, items_done, ?5
FROM iterjob_jobs
WHERE id = ?1
