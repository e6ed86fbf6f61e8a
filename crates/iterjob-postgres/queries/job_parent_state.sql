-- Moves a parent to a new state (pause, resume, cancel, retry, finish), in the
-- transaction that locked it, together with the matching change of its partitions.
-- $1 id, $2 state, $3 last_error (NULL: unchanged), $4 reset attempts
WITH now AS (SELECT {now_ms} AS ms)
UPDATE {schema}.jobs AS j
SET state = $2,
    finished_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled') THEN now.ms END,
    last_error = COALESCE($3, j.last_error),
    attempts = CASE WHEN $4 THEN 0 ELSE j.attempts END,
    crashes = CASE WHEN $4 THEN 0 ELSE j.crashes END,
    pause_requested = FALSE,
    cancel_requested = FALSE
FROM now
WHERE j.id = $1
RETURNING j.*
