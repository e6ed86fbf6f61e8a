-- `Store::job_delete`: the history of a job and of its partitions.
-- ? id (bound twice)
DELETE FROM iterjob_job_events
WHERE job_id = ? OR job_id IN (SELECT id FROM iterjob_jobs WHERE parent_id = ?)
