-- `Store::schedule_tick`: moves the last tick from the value the scheduler read; no
-- row is affected when another process moved it first.
-- ? tick, ? name, ? previous tick
UPDATE iterjob_schedules SET last_tick = ? WHERE name = ? AND last_tick = ?
