-- A parent's progress: its partitions' sums; the total only once every partition
-- knows its own; how many of them are running, queued, retrying and paused (the
-- parent's shown state follows them: `iterjob::store::parent_shown_state`).
-- $1 parent id
SELECT COUNT(*) AS partitions,
       COALESCE(SUM(items_done), 0)::bigint AS items_done,
       CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total)::bigint END AS items_total,
       COUNT(*) FILTER (WHERE state = 'running') AS running,
       COUNT(*) FILTER (WHERE state = 'queued') AS queued,
       COUNT(*) FILTER (WHERE state = 'retrying') AS retrying,
       COUNT(*) FILTER (WHERE state = 'paused') AS paused
FROM {schema}.jobs
WHERE parent_id = $1
