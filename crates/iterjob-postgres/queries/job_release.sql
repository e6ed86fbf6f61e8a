-- `Store::job_release`, fenced by the run token. Right-hand sides see the old row.
-- A job that becomes claimable now (interrupted, back to `queued`) is announced
-- with NOTIFY in the same statement.
-- $1 id, $2 run_token, $3 with progress, $4 cursor (JSON text or NULL),
-- $5 items_done, $6 items_total, $7 running_ms, $8 new state,
-- $9 run_at (NULL: unchanged), $10 attempts to add, $11 interruptions to add,
-- $12 last_error (NULL: unchanged), $13 finished, $14 clear requests,
-- $15 NOTIFY channel (NULL: no notification)
WITH now AS MATERIALIZED (SELECT {now_ms} AS ms),
released AS (
    UPDATE {schema}.jobs AS j
    SET cursor           = CASE WHEN $3 THEN $4::jsonb ELSE j.cursor END,
        crashes          = CASE WHEN $3 AND $5 > j.items_done THEN 0 ELSE j.crashes END,
        items_done       = CASE WHEN $3 THEN $5 ELSE j.items_done END,
        items_total      = CASE WHEN $3 THEN $6 ELSE j.items_total END,
        running_ms       = CASE WHEN $3 THEN $7 ELSE j.running_ms END,
        checkpointed_at  = CASE WHEN $3 THEN now.ms ELSE j.checkpointed_at END,
        state            = $8,
        run_at           = COALESCE($9, j.run_at),
        attempts         = j.attempts + $10,
        interruptions    = j.interruptions + $11,
        last_error       = COALESCE($12, j.last_error),
        finished_at      = CASE WHEN $13 THEN now.ms ELSE j.finished_at END,
        pause_requested  = CASE WHEN $14 THEN FALSE ELSE j.pause_requested END,
        cancel_requested = CASE WHEN $14 THEN FALSE ELSE j.cancel_requested END,
        split_requested  = FALSE,
        run_token        = NULL,
        worker_id        = NULL,
        lease_expires_at = NULL
    FROM now
    WHERE j.id = $1 AND j.run_token = $2 AND j.state = 'running'
    RETURNING j.id, j.state, j.queue, j.run_at, j.parent_id, now.ms AS now_ms
)
SELECT r.id,
       r.parent_id,
       CASE WHEN $15::text IS NOT NULL AND r.state = 'queued' AND r.run_at <= r.now_ms
            THEN pg_notify($15, json_build_object(
                'iterjob', 1, 'event', 'available', 'queue', r.queue)::text)
       END AS notified
FROM released AS r
