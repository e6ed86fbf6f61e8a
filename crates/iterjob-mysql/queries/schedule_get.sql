-- One schedule's state (after taking its tick, in the same transaction).
-- ? name
SELECT name, last_tick, last_job FROM iterjob_schedules WHERE name = ?
