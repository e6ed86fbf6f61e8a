-- `Store::queue_resume`: the row's deletion is the resumption.
-- $1 queue
DELETE FROM {schema}.queue_pauses WHERE queue = $1 RETURNING queue
