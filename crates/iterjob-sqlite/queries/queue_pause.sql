-- `Store::queue_pause`: pauses a queue, or sets the mode of a paused one (keeping
-- when it was paused).
-- ?1 queue, ?2 now, ?3 mode
INSERT INTO iterjob_queue_pauses (queue, since, mode)
VALUES (?1, ?2, ?3)
ON CONFLICT (queue) DO UPDATE SET mode = excluded.mode
RETURNING queue, since, mode
