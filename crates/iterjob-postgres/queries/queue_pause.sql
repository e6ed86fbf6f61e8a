-- `Store::queue_pause`: pauses a queue, or sets the mode of a paused one (keeping
-- when it was paused).
-- $1 queue, $2 mode
INSERT INTO {schema}.queue_pauses (queue, since, mode)
VALUES ($1, {now_ms}, $2)
ON CONFLICT (queue) DO UPDATE SET mode = EXCLUDED.mode
RETURNING queue, since, mode
