-- One job of `Store::job_insert_many`.
-- ?1 kind, ?2 queue, ?3 priority, ?4 params (JSON), ?5 cursor (JSON or NULL),
-- ?6 max_attempts, ?7 unique_key, ?8 now, ?9 run_at (NULL: now), ?10 partitions,
-- ?11 trace context (NULL: none)
INSERT INTO iterjob_jobs (
    kind, queue, priority, state, params, cursor, max_attempts, unique_key,
    created_at, run_at, partitions, trace_context
)
VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, COALESCE(?9, ?8), ?10, ?11)
RETURNING id
