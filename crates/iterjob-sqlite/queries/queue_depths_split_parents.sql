-- `Store::queue_depths`, second read: the split parents (a parent with
-- partitions), taken out of the first read's counts as `queue_rows` leaves them
-- out. Reads the parents only.
SELECT p.queue, p.state, COUNT(*) AS n
FROM iterjob_jobs AS p
WHERE p.partitions IS NOT NULL
  AND EXISTS (SELECT 1 FROM iterjob_jobs AS c WHERE c.parent_id = p.id)
GROUP BY p.queue, p.state
