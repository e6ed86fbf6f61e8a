-- `Store::job_insert_many`: a run of jobs without a unique key, in one statement.
-- The ids were drawn from the table's sequence beforehand (job_insert_many_ids.sql)
-- and are given in input order, so the returned ids ascend with the input.
-- $1 ids, $2 kinds, $3 queues, $4 priorities, $5 params (JSON text),
-- $6 cursors (JSON text or NULL), $7 max_attempts, $8 run_at (NULL: now),
-- $9 partitions (NULL: not partitioned), $10 trace contexts (NULL: none)
INSERT INTO {schema}.jobs (
    id, kind, queue, priority, state, params, cursor, max_attempts, created_at, run_at,
    partitions, trace_context
)
SELECT t.id, t.kind, t.queue, t.priority, 'queued', t.params::jsonb, t.cursor::jsonb,
       t.max_attempts, now.ms, COALESCE(t.run_at, now.ms), t.partitions, t.trace_context
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::text[],
            $7::bigint[], $8::bigint[], $9::integer[], $10::text[])
         AS t(id, kind, queue, priority, params, cursor, max_attempts, run_at, partitions,
              trace_context),
     (SELECT {now_ms} AS ms) AS now
