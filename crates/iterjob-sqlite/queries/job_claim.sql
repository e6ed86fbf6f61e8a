-- `Store::job_claim`: one statement, so the selection and the update are atomic.
-- The subquery walks the partial index of claimable jobs in claim order and stops
-- after `limit` matches; `INDEXED BY` keeps the planner from sorting every waiting
-- job through the (state, queue, …) index when the table has no statistics.
-- Paused queues (`iterjob_queue_pauses`) are taken out of the queues asked for.
-- ?1 now, ?2 worker_id, ?3 lease_expires_at, ?4 queues (JSON array),
-- ?5 kinds (JSON array), ?6 limit
UPDATE iterjob_jobs
SET state = 'running',
    run_token = random(),
    worker_id = ?2,
    lease_expires_at = ?3,
    runs = runs + 1,
    started_at = COALESCE(started_at, ?1)
WHERE id IN (
    SELECT id
    FROM iterjob_jobs INDEXED BY iterjob_jobs_claimable
    WHERE state IN ('queued', 'retrying')
      AND run_at <= ?1
      AND queue IN (SELECT value FROM json_each(?4)
                    WHERE value NOT IN (SELECT queue FROM iterjob_queue_pauses))
      AND kind IN (SELECT value FROM json_each(?5))
    ORDER BY priority DESC, run_at, id
    LIMIT ?6
)
RETURNING *
