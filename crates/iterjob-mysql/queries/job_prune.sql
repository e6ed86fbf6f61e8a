-- `Store::job_prune`: a batch of jobs, after their history and partitions.
-- {ids} the jobs' ids
DELETE FROM iterjob_jobs WHERE id IN ({ids})
