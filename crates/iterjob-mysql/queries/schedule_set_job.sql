-- The job a schedule's tick enqueued.
-- ? job id, ? name
UPDATE iterjob_schedules SET last_job = ? WHERE name = ?
