-- `Store::job_delete`: a job's partitions (before the job: they reference it).
-- ? parent id
DELETE FROM iterjob_jobs WHERE parent_id = ?
