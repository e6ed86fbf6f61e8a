-- `Store::job_delete`: the history of a job and of its partitions.
-- ?1 id
DELETE FROM iterjob_job_events
WHERE job_id = ?1 OR job_id IN (SELECT id FROM iterjob_jobs WHERE parent_id = ?1)
