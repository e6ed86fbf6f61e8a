-- `Store::job_list`: newest first, keyset-paged by id.
-- ? state (twice), ? kind (twice), ? queue (twice), ? before_id, ? top_level, ? limit
SELECT *
FROM iterjob_jobs
WHERE (? IS NULL OR state = ?)
  AND (? IS NULL OR kind = ?)
  AND (? IS NULL OR queue = ?)
  AND id < COALESCE(?, 9223372036854775807)
  AND (NOT ? OR parent_id IS NULL)
ORDER BY id DESC
LIMIT ?
