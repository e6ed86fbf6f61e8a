-- Whether a job exists and has not finished (a schedule's previous job).
-- ?1 id
SELECT 1 FROM iterjob_jobs WHERE id = ?1 AND state NOT IN ('completed', 'failed', 'cancelled')
