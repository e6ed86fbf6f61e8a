-- `Store::queue_resume`: the row's deletion is the resumption.
-- ? queue
DELETE FROM iterjob_queue_pauses WHERE queue = ?
