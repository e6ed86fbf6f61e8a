-- Reads and locks a job for an admin action (pause, resume, cancel, retry), in the
-- transaction that then changes it: a concurrent claim, release or admin action
-- waits for it, so the state checked is the state changed.
-- $1 id
SELECT * FROM {schema}.jobs WHERE id = $1 FOR UPDATE
