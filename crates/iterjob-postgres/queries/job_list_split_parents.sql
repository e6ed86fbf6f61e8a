-- `Store::job_list` by a state a split parent can show without storing it (queued,
-- retrying, paused): the split parents, stored `running`, newest first; the store
-- keeps those that show the state and merges them into the page.
-- $1 kind (NULL: any), $2 queue (NULL: any), $3 before_id (NULL: no bound), $4 limit
SELECT *
FROM {schema}.jobs
WHERE state = 'running'
  AND partitions IS NOT NULL
  AND ($1::text IS NULL OR kind = $1)
  AND ($2::text IS NULL OR queue = $2)
  AND id < COALESCE($3::bigint, 9223372036854775807)
ORDER BY id DESC
LIMIT $4
