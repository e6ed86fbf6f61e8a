-- `Store::job_count_top_level_by_state`, second read (the first counts every job
-- by state): every partition by parent, the parent's stored state and its own
-- state. Reads the partitions only (the index on parent_id holds no other row).
SELECT c.parent_id, p.state AS parent_state, c.state, COUNT(*) AS n
FROM iterjob_jobs AS c
JOIN iterjob_jobs AS p ON p.id = c.parent_id
WHERE c.parent_id IS NOT NULL
GROUP BY c.parent_id, p.state, c.state
