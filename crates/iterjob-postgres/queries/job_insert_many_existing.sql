-- The unfinished job holding a unique key, if any (`Store::job_insert_many`).
-- $1 unique_key
SELECT id
FROM {schema}.jobs
WHERE unique_key = $1
  AND state NOT IN ('completed', 'failed', 'cancelled')
LIMIT 1
