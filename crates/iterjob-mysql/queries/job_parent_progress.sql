-- A split parent's progress: its partitions' sums (`items_total` only once every
-- partition's total is known); how many of them are running, queued, retrying and
-- paused (the parent's shown state follows them: `iterjob::store::parent_shown_state`).
-- ? parent id
SELECT COUNT(*) AS `partitions`,
       CAST(COALESCE(SUM(items_done), 0) AS SIGNED) AS items_done,
       CAST(CASE WHEN COUNT(items_total) = COUNT(*) THEN SUM(items_total) END AS SIGNED) AS items_total,
       CAST(COALESCE(SUM(state = 'running'), 0) AS SIGNED) AS running,
       CAST(COALESCE(SUM(state = 'queued'), 0) AS SIGNED) AS queued,
       CAST(COALESCE(SUM(state = 'retrying'), 0) AS SIGNED) AS retrying,
       CAST(COALESCE(SUM(state = 'paused'), 0) AS SIGNED) AS paused
FROM iterjob_jobs
WHERE parent_id = ?
