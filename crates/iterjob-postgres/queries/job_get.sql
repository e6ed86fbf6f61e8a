-- `Store::job_get`.
-- $1 id
SELECT * FROM {schema}.jobs WHERE id = $1
