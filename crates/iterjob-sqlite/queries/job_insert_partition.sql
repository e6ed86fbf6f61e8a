-- A partition of a parent (`Store::job_partition`, `Store::job_split`), copying the
-- parent's kind, queue, priority, attempt budget and trace context. It is claimable at once while the
-- parent runs, paused while the parent is paused, and cancelled once the parent is
-- finished.
-- ?1 parent id, ?2 params (JSON), ?3 now
INSERT INTO iterjob_jobs (
    kind, queue, priority, state, params, max_attempts, created_at, run_at, finished_at,
    parent_id, trace_context
)
SELECT kind, queue, priority,
       CASE state WHEN 'running' THEN 'queued' WHEN 'paused' THEN 'paused' ELSE 'cancelled' END,
       ?2, max_attempts, ?3, ?3,
       CASE WHEN state IN ('running', 'paused') THEN NULL ELSE ?3 END,
       id, trace_context
FROM iterjob_jobs
WHERE id = ?1
RETURNING id
