-- `Store::queue_rows`: one pass over the jobs, grouped by queue, kind and state. A
-- parent that was split (it has partitions) is left out: its partitions are the
-- units that run. Sums are cast back to BIGINT (PostgreSQL sums BIGINTs as NUMERIC).
-- $1 now (ms): what is claimable
SELECT j.queue, j.kind, j.state,
       COUNT(*) AS jobs,
       COUNT(*) FILTER (WHERE j.state IN ('queued', 'retrying') AND j.run_at <= $1)
           AS claimable,
       MIN(j.run_at) FILTER (WHERE j.state IN ('queued', 'retrying') AND j.run_at <= $1)
           AS oldest_claimable,
       SUM(j.items_done)::bigint AS items_done,
       SUM(j.running_ms)::bigint AS running_ms,
       (SUM(GREATEST(j.items_total - j.items_done, 0)) FILTER (
           WHERE j.state = 'running'
              OR (j.state IN ('queued', 'retrying') AND j.run_at <= $1)))::bigint
           AS active_items_left,
       COUNT(*) FILTER (
           WHERE j.items_total IS NULL
             AND (j.state = 'running'
                  OR (j.state IN ('queued', 'retrying') AND j.run_at <= $1)))
           AS active_without_total
FROM {schema}.jobs AS j
WHERE j.partitions IS NULL
   OR NOT EXISTS (SELECT 1 FROM {schema}.jobs AS c WHERE c.parent_id = j.id)
GROUP BY j.queue, j.kind, j.state
ORDER BY j.queue, j.kind, j.state
