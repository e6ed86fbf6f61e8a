-- `Store::job_partitions`: a parent's partitions, by id.
-- ?1 parent id
SELECT * FROM iterjob_jobs WHERE parent_id = ?1 ORDER BY id
