-- A parent's progress: its partitions' sums; the total only once every partition
-- knows its own.
-- ?1 parent id
SELECT COUNT(*) AS partitions,
       COALESCE(SUM(items_done), 0) AS items_done,
       CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total) END AS items_total,
       COALESCE(SUM(running_ms), 0) AS running_ms
FROM iterjob_jobs
WHERE parent_id = ?1
