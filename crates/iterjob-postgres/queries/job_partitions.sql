-- `Store::job_partitions`: a parent's partitions, by id.
-- $1 parent id
SELECT * FROM {schema}.jobs WHERE parent_id = $1 ORDER BY id
