-- `Store::schedule_states`
SELECT name, last_tick, last_job FROM iterjob_schedules ORDER BY name
