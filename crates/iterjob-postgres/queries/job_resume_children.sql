-- Resume of a parent, for its partitions: paused ones are queued (run now), running
-- ones lose their pause request.
-- $1 parent id
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET run_at = CASE WHEN j.state = 'paused' THEN now.ms ELSE j.run_at END,
    cancel_requested = CASE WHEN j.state = 'paused' THEN FALSE ELSE j.cancel_requested END,
    state = CASE WHEN j.state = 'paused' THEN 'queued' ELSE j.state END,
    pause_requested = FALSE
FROM now
WHERE j.parent_id = $1 AND (j.state = 'paused' OR (j.state = 'running' AND j.pause_requested))
