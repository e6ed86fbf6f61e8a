-- `Store::job_list`, newest first. `id < COALESCE(...)` (not `$4 IS NULL OR ...`)
-- is an index condition on the primary key, so a deep page starts at `before_id`.
-- $1 state (NULL: any), $2 kind (NULL: any), $3 queue (NULL: any),
-- $4 before_id (NULL: no bound), $5 limit, $6 top-level jobs only (no partitions)
SELECT *
FROM {schema}.jobs
WHERE ($1::text IS NULL OR state = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR queue = $3)
  AND id < COALESCE($4::bigint, 9223372036854775807)
  AND (NOT $6::boolean OR parent_id IS NULL)
ORDER BY id DESC
LIMIT $5
