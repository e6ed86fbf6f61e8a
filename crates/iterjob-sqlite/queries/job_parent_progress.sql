-- A parent's progress: its partitions' sums; the total only once every partition
-- knows its own; how many of them are running, queued, retrying and paused (the
-- parent's shown state follows them: `iterjob::store::parent_shown_state`).
-- ?1 parent id
SELECT COUNT(*) AS partitions,
       COALESCE(SUM(items_done), 0) AS items_done,
       CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total) END AS items_total,
       SUM(state = 'running') AS running,
       SUM(state = 'queued') AS queued,
       SUM(state = 'retrying') AS retrying,
       SUM(state = 'paused') AS paused
FROM iterjob_jobs
WHERE parent_id = ?1
