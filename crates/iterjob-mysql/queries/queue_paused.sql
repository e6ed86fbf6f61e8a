-- One paused queue.
-- ? queue
SELECT queue, since, mode FROM iterjob_queue_pauses WHERE queue = ?
