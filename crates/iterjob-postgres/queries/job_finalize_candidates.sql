-- Split parents whose partitions have all finished (the rescuer finishes them, in case
-- the process that released the last partition died before it could).
SELECT p.id
FROM {schema}.jobs AS p
WHERE p.partitions IS NOT NULL
  AND p.state IN ('running', 'paused')
  AND p.run_token IS NULL
  AND EXISTS (SELECT 1 FROM {schema}.jobs AS c WHERE c.parent_id = p.id)
  AND NOT EXISTS (
      SELECT 1 FROM {schema}.jobs AS c
      WHERE c.parent_id = p.id AND c.state NOT IN ('completed', 'failed', 'cancelled')
  )
