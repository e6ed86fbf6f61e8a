-- `Store::job_prune`: a batch of jobs, after their history and partitions.
-- $1 the jobs' ids
DELETE FROM {schema}.jobs WHERE id = ANY($1)
