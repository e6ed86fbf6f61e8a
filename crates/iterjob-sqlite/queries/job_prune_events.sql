-- `Store::job_prune`: the history of a batch of jobs and of their partitions.
-- ?1 the jobs' ids, a JSON array
DELETE FROM iterjob_job_events
WHERE job_id IN (SELECT value FROM json_each(?1))
   OR job_id IN (SELECT id FROM iterjob_jobs WHERE parent_id IN (SELECT value FROM json_each(?1)))
