-- `Store::job_prune`: the partitions of a batch of jobs (before the jobs).
-- $1 the jobs' ids
DELETE FROM {schema}.jobs WHERE parent_id = ANY($1)
