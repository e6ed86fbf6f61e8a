-- `Store::schedule_tick` of a schedule without a row: creates it, unless another
-- process did first (then no row is affected).
-- ? name, ? tick
INSERT IGNORE INTO iterjob_schedules (name, last_tick) VALUES (?, ?)
