-- `Store::job_prune`: the history of a batch of jobs and of their partitions.
-- $1 the jobs' ids
DELETE FROM {schema}.job_events
WHERE job_id = ANY($1)
   OR job_id IN (SELECT id FROM {schema}.jobs WHERE parent_id = ANY($1))
