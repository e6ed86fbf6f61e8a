-- A job's parent (NULL for a job that is not a partition).
-- ? id
SELECT parent_id FROM iterjob_jobs WHERE id = ?
