-- `Store::job_request_split`: ask the running partition with the most items left.
-- ?1 queues (JSON array), ?2 kinds (JSON array), ?3 min_remaining
UPDATE iterjob_jobs
SET split_requested = 1
WHERE id = (
    SELECT id
    FROM iterjob_jobs
    WHERE state = 'running'
      AND parent_id IS NOT NULL
      AND split_requested = 0
      AND pause_requested = 0
      AND cancel_requested = 0
      AND items_total IS NOT NULL
      AND items_total - items_done >= ?3
      AND queue IN (SELECT value FROM json_each(?1))
      AND kind IN (SELECT value FROM json_each(?2))
    ORDER BY items_total - items_done DESC, id
    LIMIT 1
)
RETURNING id
