-- A partition of a parent (`Store::job_partition`, `Store::job_split`), copying the
-- parent's kind, queue, priority, attempt budget and trace context. It is claimable at once while the
-- parent runs, paused while the parent is paused, and cancelled once the parent is
-- finished. The caller holds a lock on the parent's row.
-- $1 parent id, $2 params (JSON text)
WITH now AS (SELECT {now_ms} AS ms)
INSERT INTO {schema}.jobs (
    kind, queue, priority, state, params, max_attempts, created_at, run_at, finished_at,
    parent_id, trace_context
)
SELECT p.kind, p.queue, p.priority,
       CASE p.state WHEN 'running' THEN 'queued' WHEN 'paused' THEN 'paused' ELSE 'cancelled' END,
       $2::jsonb, p.max_attempts, now.ms, now.ms,
       CASE WHEN p.state IN ('running', 'paused') THEN NULL ELSE now.ms END,
       p.id, p.trace_context
FROM {schema}.jobs AS p, now
WHERE p.id = $1
RETURNING id, state, queue
