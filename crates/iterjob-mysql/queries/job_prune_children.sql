-- `Store::job_prune`: the partitions of a batch of jobs (before the jobs).
-- {ids} the jobs' ids
DELETE FROM iterjob_jobs WHERE parent_id IN ({ids})
