-- `Store::queue_rows`: one pass over the jobs, grouped by queue, kind and state. A
-- parent that was split (it has partitions) is left out: its partitions are the
-- units that run.
-- ?1 now (ms): what is claimable
SELECT j.queue, j.kind, j.state,
       COUNT(*) AS jobs,
       SUM(j.state IN ('queued', 'retrying') AND j.run_at <= ?1) AS claimable,
       MIN(CASE WHEN j.state IN ('queued', 'retrying') AND j.run_at <= ?1 THEN j.run_at END)
           AS oldest_claimable,
       SUM(j.items_done) AS items_done,
       SUM(j.running_ms) AS running_ms,
       SUM(CASE WHEN (j.state = 'running'
                      OR (j.state IN ('queued', 'retrying') AND j.run_at <= ?1))
                     AND j.items_total > j.items_done
                THEN j.items_total - j.items_done ELSE 0 END) AS active_items_left,
       SUM(j.items_total IS NULL
           AND (j.state = 'running'
                OR (j.state IN ('queued', 'retrying') AND j.run_at <= ?1)))
           AS active_without_total
FROM iterjob_jobs AS j
WHERE j.partitions IS NULL
   OR NOT EXISTS (SELECT 1 FROM iterjob_jobs AS c WHERE c.parent_id = j.id)
GROUP BY j.queue, j.kind, j.state
ORDER BY j.queue, j.kind, j.state
