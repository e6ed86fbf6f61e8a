-- Whether a job exists: tells `JobNotFound` from `LeaseLost` after a fenced write
-- changed nothing.
-- $1 id
SELECT 1 FROM {schema}.jobs WHERE id = $1
