-- `Store::queue_rows`: one pass over the jobs, grouped by queue, kind and state. A
-- parent that was split (it has partitions) is left out: its partitions are the
-- units that run. Sums are cast back to BIGINT (MySQL sums as DECIMAL).
-- ? now (ms), four times: what is claimable
SELECT j.queue, j.kind, j.state,
       COUNT(*) AS jobs,
       CAST(SUM(j.state IN ('queued', 'retrying') AND j.run_at <= ?) AS SIGNED) AS claimable,
       MIN(CASE WHEN j.state IN ('queued', 'retrying') AND j.run_at <= ? THEN j.run_at END)
           AS oldest_claimable,
       CAST(SUM(j.items_done) AS SIGNED) AS items_done,
       CAST(SUM(j.running_ms) AS SIGNED) AS running_ms,
       CAST(SUM(CASE WHEN (j.state = 'running'
                           OR (j.state IN ('queued', 'retrying') AND j.run_at <= ?))
                          AND j.items_total > j.items_done
                     THEN j.items_total - j.items_done ELSE 0 END) AS SIGNED)
           AS active_items_left,
       CAST(SUM(j.items_total IS NULL
                AND (j.state = 'running'
                     OR (j.state IN ('queued', 'retrying') AND j.run_at <= ?))) AS SIGNED)
           AS active_without_total
FROM iterjob_jobs AS j
WHERE j.partitions IS NULL
   OR NOT EXISTS (SELECT 1 FROM iterjob_jobs AS c WHERE c.parent_id = j.id)
GROUP BY j.queue, j.kind, j.state
ORDER BY j.queue, j.kind, j.state
