-- `Store::queue_pauses`, and the first read of a claim (a plain consistent read: it
-- locks nothing).
SELECT queue, since, mode FROM iterjob_queue_pauses ORDER BY queue
