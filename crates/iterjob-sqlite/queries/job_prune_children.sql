-- `Store::job_prune`: the partitions of a batch of jobs (before the jobs).
-- ?1 the jobs' ids, a JSON array
DELETE FROM iterjob_jobs WHERE parent_id IN (SELECT value FROM json_each(?1))
