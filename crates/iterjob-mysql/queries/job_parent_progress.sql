-- A split parent's progress: its partitions' sums (`items_total` only once every
-- partition's total is known).
-- ? parent id
SELECT COUNT(*) AS `partitions`,
       CAST(COALESCE(SUM(items_done), 0) AS SIGNED) AS items_done,
       CAST(CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total) END AS SIGNED) AS items_total,
       CAST(COALESCE(SUM(running_ms), 0) AS SIGNED) AS running_ms
FROM iterjob_jobs
WHERE parent_id = ?
