-- A parent's progress: its partitions' sums; the total only once every partition
-- knows its own.
-- $1 parent id
SELECT COUNT(*) AS partitions,
       COALESCE(SUM(items_done), 0)::bigint AS items_done,
       CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total)::bigint END AS items_total,
       COALESCE(SUM(running_ms), 0)::bigint AS running_ms
FROM {schema}.jobs
WHERE parent_id = $1
