-- The parent of a job (it never changes), to lock the parent before the child.
-- $1 id
SELECT parent_id FROM {schema}.jobs WHERE id = $1
