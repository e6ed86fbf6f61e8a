-- `Store::queue_depths`, first read: every job by state and queue, from the index
-- that starts with (state, queue) (the claim index), without reading the rows.
SELECT queue, state, COUNT(*) AS n FROM {schema}.jobs GROUP BY state, queue
