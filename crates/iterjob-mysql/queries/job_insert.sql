-- `Store::job_insert_many`: one row per `{rows}` tuple (the store repeats the tuple
-- once per job of the chunk, in order). Ids are read back as LAST_INSERT_ID() plus
-- the row's position when the server hands out consecutive ids to a multi-row
-- INSERT (`innodb_autoinc_lock_mode` 0 or 1); otherwise the store inserts one row at
-- a time.
-- per row: kind, queue, priority, params (JSON text), cursor (JSON text or NULL),
-- max_attempts, unique_key, run_at (NULL: now), partitions, trace context (NULL: none)
INSERT INTO iterjob_jobs (
    kind, queue, priority, state, params, `cursor`, max_attempts, unique_key,
    created_at, run_at, `partitions`, trace_context
)
VALUES {rows}
