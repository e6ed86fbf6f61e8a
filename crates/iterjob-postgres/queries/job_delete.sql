-- `Store::job_delete`: the job itself, after its history and partitions.
-- $1 id
DELETE FROM {schema}.jobs WHERE id = $1
