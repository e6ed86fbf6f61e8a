-- Pause of a parent, for its partitions: waiting ones pause, running ones are asked to.
-- $1 parent id
UPDATE {schema}.jobs
SET state = CASE WHEN state IN ('queued', 'retrying') THEN 'paused' ELSE state END,
    pause_requested = CASE WHEN state = 'running' THEN TRUE ELSE pause_requested END
WHERE parent_id = $1 AND state IN ('queued', 'retrying', 'running')
