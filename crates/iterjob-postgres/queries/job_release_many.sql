-- `Store::job_release_many`: `job_release.sql` for many completions in one statement, each
-- row fenced by its own run token. Right-hand sides see the old row. A release whose
-- token no longer matches is missing from the result (the caller tells lease lost
-- from not found). Jobs that become claimable now are announced with NOTIFY.
-- One array per `job_release.sql` parameter, one element per release:
-- $1 ids, $2 run tokens, $3 with progress, $4 cursors (JSON text or NULL),
-- $5 items_done, $6 items_total, $7 running_ms, $8 new states,
-- $9 run_at (NULL: unchanged), $10 attempts to add, $11 interruptions to add,
-- $12 last_error (NULL: unchanged), $13 finished, $14 clear requests;
-- $15 NOTIFY channel (NULL: no notification)
WITH now AS MATERIALIZED (SELECT {now_ms} AS ms),
r AS (
    SELECT *
    FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::text[], $5::bigint[],
                $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[],
                $11::bigint[], $12::text[], $13::boolean[], $14::boolean[])
        AS r(id, run_token, with_progress, cursor, items_done, items_total, running_ms,
             state, run_at, attempts, interruptions, last_error, finished, clear_requests)
),
released AS (
    UPDATE {schema}.jobs AS j
    SET cursor           = CASE WHEN r.with_progress THEN r.cursor::jsonb ELSE j.cursor END,
        crashes          = CASE WHEN r.with_progress AND r.items_done > j.items_done
                                THEN 0 ELSE j.crashes END,
        items_done       = CASE WHEN r.with_progress THEN r.items_done ELSE j.items_done END,
        items_total      = CASE WHEN r.with_progress THEN r.items_total ELSE j.items_total END,
        running_ms       = CASE WHEN r.with_progress THEN r.running_ms ELSE j.running_ms END,
        checkpointed_at  = CASE WHEN r.with_progress THEN now.ms ELSE j.checkpointed_at END,
        state            = r.state,
        run_at           = COALESCE(r.run_at, j.run_at),
        attempts         = j.attempts + r.attempts,
        interruptions    = j.interruptions + r.interruptions,
        last_error       = COALESCE(r.last_error, j.last_error),
        finished_at      = CASE WHEN r.finished THEN now.ms ELSE j.finished_at END,
        pause_requested  = CASE WHEN r.clear_requests THEN FALSE ELSE j.pause_requested END,
        cancel_requested = CASE WHEN r.clear_requests THEN FALSE ELSE j.cancel_requested END,
        split_requested  = FALSE,
        run_token        = NULL,
        worker_id        = NULL,
        lease_expires_at = NULL
    FROM r, now
    WHERE j.id = r.id AND j.run_token = r.run_token AND j.state = 'running'
    RETURNING j.id, j.state, j.queue, j.run_at, j.parent_id, now.ms AS now_ms
)
SELECT rel.id,
       rel.parent_id,
       CASE WHEN $15::text IS NOT NULL AND rel.state = 'queued' AND rel.run_at <= rel.now_ms
            THEN pg_notify($15, json_build_object(
                'iterjob', 1, 'event', 'available', 'queue', rel.queue)::text)
       END AS notified
FROM released AS rel
