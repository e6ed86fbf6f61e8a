-- `Store::job_get`.
-- ? id
SELECT * FROM iterjob_jobs WHERE id = ?
