-- Whether a job exists and has not finished (a schedule's previous job).
-- ? id
SELECT 1 AS one FROM iterjob_jobs WHERE id = ? AND state NOT IN ('completed', 'failed', 'cancelled')
