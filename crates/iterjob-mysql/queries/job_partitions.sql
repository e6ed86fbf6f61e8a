-- A parent's partitions, by id.
-- ? parent id
SELECT * FROM iterjob_jobs WHERE parent_id = ? ORDER BY id
