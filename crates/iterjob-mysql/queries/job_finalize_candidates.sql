-- Split parents whose partitions have all finished but which are not finished
-- themselves (a partition finished while its parent could not be finalized).
SELECT p.id
FROM iterjob_jobs p
WHERE p.`partitions` IS NOT NULL
  AND p.state IN ('running', 'paused')
  AND p.run_token IS NULL
  AND EXISTS (SELECT 1 FROM iterjob_jobs c WHERE c.parent_id = p.id)
  AND NOT EXISTS (
      SELECT 1 FROM iterjob_jobs c
      WHERE c.parent_id = p.id AND c.state NOT IN ('completed', 'failed', 'cancelled')
  )
