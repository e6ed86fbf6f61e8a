-- `Store::schedule_tick` of a schedule without a row: creates it, unless another
-- process did first (then no row comes back).
-- ?1 name, ?2 tick
INSERT INTO iterjob_schedules (name, last_tick) VALUES (?1, ?2)
ON CONFLICT (name) DO NOTHING
RETURNING last_job
