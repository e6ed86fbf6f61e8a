-- `Store::job_rescue_expired`: running jobs whose lease expired (or that have none)
-- get a crash and an attempt; they fail when crashes reach $1 or attempts reach
-- max_attempts, and are queued again (run now, announced with NOTIFY) otherwise.
-- Right-hand sides see the old row, hence the `+ 1` everywhere. A heartbeat that
-- commits first is seen: the row is re-checked after its lock, and a renewed lease
-- is not rescued.
-- $1 max_crashes, $2 NOTIFY channel (NULL: no notification)
WITH now AS MATERIALIZED (SELECT {now_ms} AS ms),
rescued AS (
    UPDATE {schema}.jobs AS j
    SET crashes = j.crashes + 1,
        attempts = j.attempts + 1,
        state = CASE
            WHEN j.crashes + 1 >= $1 OR j.attempts + 1 >= j.max_attempts THEN 'failed'
            ELSE 'queued'
        END,
        last_error = CASE
            WHEN j.crashes + 1 >= $1 THEN
                'worker lost its lease ' || (j.crashes + 1) || ' times without progress (it '
                || 'crashed, was killed, or hung); the job may be crashing its worker'
            WHEN j.attempts + 1 >= j.max_attempts THEN
                'worker lost its lease (it crashed, was killed, or hung) and the job has used all '
                || j.max_attempts || ' attempts'
            ELSE j.last_error
        END,
        finished_at = CASE
            WHEN j.crashes + 1 >= $1 OR j.attempts + 1 >= j.max_attempts THEN now.ms
            ELSE j.finished_at
        END,
        pause_requested = CASE
            WHEN j.crashes + 1 >= $1 OR j.attempts + 1 >= j.max_attempts THEN FALSE
            ELSE j.pause_requested
        END,
        cancel_requested = CASE
            WHEN j.crashes + 1 >= $1 OR j.attempts + 1 >= j.max_attempts THEN FALSE
            ELSE j.cancel_requested
        END,
        run_at = CASE
            WHEN j.crashes + 1 >= $1 OR j.attempts + 1 >= j.max_attempts THEN j.run_at
            ELSE now.ms
        END,
        split_requested = FALSE,
        run_token = NULL,
        worker_id = NULL,
        lease_expires_at = NULL
    FROM now
    WHERE j.state = 'running'
      AND j.run_token IS NOT NULL -- a split parent runs without a worker
      AND (j.lease_expires_at IS NULL OR j.lease_expires_at < now.ms)
    RETURNING j.id, j.state, j.queue
)
SELECT r.id,
       r.state,
       CASE WHEN $2::text IS NOT NULL AND r.state = 'queued'
            THEN pg_notify($2, json_build_object(
                'iterjob', 1, 'event', 'available', 'queue', r.queue)::text)
       END AS notified
FROM rescued AS r
