-- `Store::job_list` by a state a split parent can show without storing it (queued,
-- retrying, paused): the split parents, stored `running`, newest first; the store
-- keeps those that show the state and merges them into the page.
-- ? kind (twice), ? queue (twice), ? before_id, ? limit
SELECT *
FROM iterjob_jobs
WHERE state = 'running'
  AND partitions IS NOT NULL
  AND (? IS NULL OR kind = ?)
  AND (? IS NULL OR queue = ?)
  AND id < COALESCE(?, 9223372036854775807)
ORDER BY id DESC
LIMIT ?
