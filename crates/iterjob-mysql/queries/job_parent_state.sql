-- A split parent's own state: moved by a cascade, or finished with its partitions.
-- `state` is written last (`finished_at` reads the new state from the parameter).
-- ? state (finished?), ? last_error, ? reset attempts (twice), ? state, ? id
UPDATE iterjob_jobs
SET finished_at = CASE WHEN ? IN ('completed', 'failed', 'cancelled') THEN {now_ms} END,
    last_error = COALESCE(?, last_error),
    attempts = CASE WHEN ? THEN 0 ELSE attempts END,
    crashes = CASE WHEN ? THEN 0 ELSE crashes END,
    pause_requested = FALSE,
    cancel_requested = FALSE,
    state = ?
WHERE id = ?
