-- `Store::job_list`, newest first. `id < COALESCE(...)` (not `?4 IS NULL OR ...`)
-- lets SQLite seek straight to `before_id` in the rowid order: a page deep in a
-- million jobs costs what the first page costs.
-- ?1 state (NULL: any), ?2 kind (NULL: any), ?3 queue (NULL: any),
-- ?4 before_id (NULL: no bound), ?5 limit, ?6 top-level jobs only (no partitions)
SELECT *
FROM iterjob_jobs
WHERE (?1 IS NULL OR state = ?1)
  AND (?2 IS NULL OR kind = ?2)
  AND (?3 IS NULL OR queue = ?3)
  AND id < COALESCE(?4, 9223372036854775807)
  AND (NOT ?6 OR parent_id IS NULL)
ORDER BY id DESC
LIMIT ?5
