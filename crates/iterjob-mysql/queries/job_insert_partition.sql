-- A new partition of a parent: its kind, queue, priority, attempts and trace context; queued while
-- the parent runs, paused or cancelled with it.
-- ? params (JSON text), ? parent id
INSERT INTO iterjob_jobs (
    kind, queue, priority, state, params, max_attempts, created_at, run_at, finished_at,
    parent_id, trace_context
)
SELECT kind, queue, priority,
       CASE state WHEN 'running' THEN 'queued' WHEN 'paused' THEN 'paused' ELSE 'cancelled' END,
       ?, max_attempts, {now_ms}, {now_ms},
       CASE WHEN state IN ('running', 'paused') THEN NULL ELSE {now_ms} END,
       id, trace_context
FROM iterjob_jobs
WHERE id = ?
