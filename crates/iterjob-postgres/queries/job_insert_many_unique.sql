-- One job of `Store::job_insert_many` with a unique key: inserted unless an
-- unfinished job holds the key (then no row is returned, and
-- job_insert_many_existing.sql finds that job). A concurrent enqueue of the same
-- key waits for this transaction instead of failing.
-- $1 kind, $2 queue, $3 priority, $4 params (JSON text), $5 cursor (JSON text or NULL),
-- $6 max_attempts, $7 unique_key, $8 run_at (NULL: now), $9 partitions (NULL: none),
-- $10 trace context (NULL: none)
WITH now AS (SELECT {now_ms} AS ms)
INSERT INTO {schema}.jobs (
    kind, queue, priority, state, params, cursor, max_attempts, unique_key,
    created_at, run_at, partitions, trace_context
)
SELECT $1, $2, $3, 'queued', $4::jsonb, $5::jsonb, $6, $7, now.ms, COALESCE($8, now.ms),
       $9::integer, $10
FROM now
ON CONFLICT (unique_key)
    WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled')
    DO NOTHING
RETURNING id
