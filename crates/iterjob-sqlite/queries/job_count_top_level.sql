-- `Store::job_count_top_level_by_state`, first read: the top-level jobs (no
-- parent) by their stored state; the split parents among them are corrected by
-- the second read (job_count_split_partitions.sql).
SELECT state, COUNT(*) AS n FROM iterjob_jobs WHERE parent_id IS NULL GROUP BY state
