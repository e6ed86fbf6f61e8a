-- `Store::job_delete`: the job itself, after its history and partitions.
-- ?1 id
DELETE FROM iterjob_jobs WHERE id = ?1
