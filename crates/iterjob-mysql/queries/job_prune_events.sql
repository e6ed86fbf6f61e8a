-- `Store::job_prune`: the history of a batch of jobs and of their partitions.
-- {ids} the jobs' ids (twice)
DELETE FROM iterjob_job_events
WHERE job_id IN ({ids})
   OR job_id IN (SELECT id FROM iterjob_jobs WHERE parent_id IN ({ids}))
