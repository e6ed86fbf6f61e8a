-- Locks a parent's row against pause, resume, cancel, retry and finishing while a
-- partition is added, so the new partition joins in the parent's current state.
-- $1 parent id
SELECT state FROM {schema}.jobs WHERE id = $1 FOR SHARE
