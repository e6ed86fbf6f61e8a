-- Resume of a parent, for its partitions: paused ones are queued (run now), running
-- ones lose their pause request.
-- ?1 parent id, ?2 now
UPDATE iterjob_jobs
SET run_at = CASE WHEN state = 'paused' THEN ?2 ELSE run_at END,
    cancel_requested = CASE WHEN state = 'paused' THEN 0 ELSE cancel_requested END,
    state = CASE WHEN state = 'paused' THEN 'queued' ELSE state END,
    pause_requested = 0
WHERE parent_id = ?1 AND (state = 'paused' OR (state = 'running' AND pause_requested = 1))
