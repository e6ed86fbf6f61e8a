-- The unfinished job holding a unique key.
-- ? unique_key
SELECT id FROM iterjob_jobs WHERE unique_active = ?
