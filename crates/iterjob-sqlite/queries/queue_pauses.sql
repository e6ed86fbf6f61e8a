-- `Store::queue_pauses`
SELECT queue, since, mode FROM iterjob_queue_pauses ORDER BY queue
