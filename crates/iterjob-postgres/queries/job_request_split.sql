-- `Store::job_request_split`: ask the running partition with the most items left.
-- A partition being asked by another worker at the same moment is skipped.
-- $1 queues, $2 kinds, $3 min_remaining
UPDATE {schema}.jobs
SET split_requested = TRUE
WHERE id = (
    SELECT id
    FROM {schema}.jobs
    WHERE state = 'running'
      AND parent_id IS NOT NULL
      AND NOT split_requested
      AND NOT pause_requested
      AND NOT cancel_requested
      AND items_total IS NOT NULL
      AND items_total - items_done >= $3
      AND queue = ANY($1)
      AND kind = ANY($2)
    ORDER BY items_total - items_done DESC, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id
