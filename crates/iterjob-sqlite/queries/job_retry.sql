-- `Store::job_retry`, run in a `BEGIN IMMEDIATE` transaction after the caller
-- checked the state (failed or cancelled) and the unique key.
-- ?1 id, ?2 now
UPDATE iterjob_jobs
SET state = 'queued',
    run_at = ?2,
    attempts = 0,
    crashes = 0,
    finished_at = NULL,
    pause_requested = 0,
    cancel_requested = 0
WHERE id = ?1
RETURNING *
