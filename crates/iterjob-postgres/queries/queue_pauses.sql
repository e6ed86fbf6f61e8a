-- `Store::queue_pauses`
SELECT queue, since, mode FROM {schema}.queue_pauses ORDER BY queue
