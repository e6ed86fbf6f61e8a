-- Whether a job exists: tells `JobNotFound` from `LeaseLost` after a fenced write
-- changed nothing.
-- ? id
SELECT 1 FROM iterjob_jobs WHERE id = ?
