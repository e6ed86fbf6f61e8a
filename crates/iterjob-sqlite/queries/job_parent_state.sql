-- Moves a parent to a new state (pause, resume, cancel, retry, finish). Run inside a
-- transaction together with the matching change of its partitions.
-- ?1 id, ?2 state, ?3 now, ?4 last_error (NULL: unchanged), ?5 reset attempts (0/1)
UPDATE iterjob_jobs
SET state = ?2,
    finished_at = CASE WHEN ?2 IN ('completed', 'failed', 'cancelled') THEN ?3 END,
    last_error = COALESCE(?4, last_error),
    attempts = CASE WHEN ?5 THEN 0 ELSE attempts END,
    crashes = CASE WHEN ?5 THEN 0 ELSE crashes END,
    pause_requested = 0,
    cancel_requested = 0
WHERE id = ?1
RETURNING *
