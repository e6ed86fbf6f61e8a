-- `Store::job_request_split`, first statement: the running partition of the kinds
-- and queues asked for with the most items left (at least `min_remaining`), locked,
-- skipping one another worker holds. `{queues}` and `{kinds}` are `?` lists.
-- ? min_remaining, ? queues…, ? kinds…
SELECT id
FROM iterjob_jobs
WHERE state = 'running'
  AND parent_id IS NOT NULL
  AND NOT split_requested
  AND NOT pause_requested
  AND NOT cancel_requested
  AND items_total IS NOT NULL
  AND items_total - items_done >= ?
  AND queue IN ({queues})
  AND kind IN ({kinds})
ORDER BY items_total - items_done DESC, id
LIMIT 1
FOR UPDATE SKIP LOCKED
