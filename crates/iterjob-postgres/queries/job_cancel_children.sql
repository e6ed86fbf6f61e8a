-- Cancel of a parent, for its partitions: waiting ones are cancelled, running ones are
-- asked to cancel.
-- $1 parent id
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE now.ms END,
    pause_requested = CASE WHEN j.state = 'running' THEN j.pause_requested ELSE FALSE END,
    cancel_requested = CASE WHEN j.state = 'running' THEN TRUE ELSE FALSE END,
    state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END
FROM now
WHERE j.parent_id = $1 AND j.state IN ('queued', 'retrying', 'paused', 'running')
