-- A job, locked for an admin action in its transaction.
-- ? id
SELECT * FROM iterjob_jobs WHERE id = ? FOR UPDATE
