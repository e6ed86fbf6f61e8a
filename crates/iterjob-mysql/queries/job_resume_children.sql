-- A split parent's resume reaches its partitions. `state` is written last.
-- ? parent id
UPDATE iterjob_jobs
SET run_at = CASE WHEN state = 'paused' THEN {now_ms} ELSE run_at END,
    cancel_requested = CASE WHEN state = 'paused' THEN FALSE ELSE cancel_requested END,
    pause_requested = FALSE,
    state = CASE WHEN state = 'paused' THEN 'queued' ELSE state END
WHERE parent_id = ? AND (state = 'paused' OR (state = 'running' AND pause_requested))
