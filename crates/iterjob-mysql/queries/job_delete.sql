-- `Store::job_delete`: the job itself, after its history and partitions.
-- ? id
DELETE FROM iterjob_jobs WHERE id = ?
