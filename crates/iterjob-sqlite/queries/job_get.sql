-- `Store::job_get`.
-- ?1 id
SELECT * FROM iterjob_jobs WHERE id = ?1
