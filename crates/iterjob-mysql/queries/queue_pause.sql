-- `Store::queue_pause`: pauses a queue, or sets the mode of a paused one (keeping
-- when it was paused); read back with `queue_paused.sql` in the same transaction.
-- ? queue, ? mode
INSERT INTO iterjob_queue_pauses (queue, since, mode)
VALUES (?, {now_ms}, ?)
ON DUPLICATE KEY UPDATE mode = VALUES(mode)
