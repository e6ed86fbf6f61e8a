-- `Store::schedule_tick`: moves the last tick from the value the scheduler read;
-- no row comes back when another process moved it first.
-- $1 name, $2 tick, $3 previous tick
UPDATE {schema}.schedules SET last_tick = $2
WHERE name = $1 AND last_tick = $3
RETURNING last_job
