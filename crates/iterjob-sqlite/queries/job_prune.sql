-- `Store::job_prune`: a batch of jobs, after their history and partitions.
-- ?1 the jobs' ids, a JSON array
DELETE FROM iterjob_jobs WHERE id IN (SELECT value FROM json_each(?1))
