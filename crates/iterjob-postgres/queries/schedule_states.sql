-- `Store::schedule_states`
SELECT name, last_tick, last_job FROM {schema}.schedules ORDER BY name
