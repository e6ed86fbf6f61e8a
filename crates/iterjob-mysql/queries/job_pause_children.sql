-- A split parent's pause reaches its partitions: waiting ones pause, running ones
-- are asked to. `state` is written last.
-- ? parent id
UPDATE iterjob_jobs
SET pause_requested = CASE WHEN state = 'running' THEN TRUE ELSE pause_requested END,
    state = CASE WHEN state IN ('queued', 'retrying') THEN 'paused' ELSE state END
WHERE parent_id = ? AND state IN ('queued', 'retrying', 'running')
