-- The job a schedule's tick enqueued.
-- $1 name, $2 job id
UPDATE {schema}.schedules SET last_job = $2 WHERE name = $1
