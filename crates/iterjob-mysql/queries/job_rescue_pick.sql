-- `Store::job_rescue_expired`, first statement: the running jobs whose lease expired
-- (a split parent runs without a worker or token and is left alone), locked,
-- skipping those another rescuer holds.
SELECT id
FROM iterjob_jobs
WHERE state = 'running'
  AND run_token IS NOT NULL
  AND (lease_expires_at IS NULL OR lease_expires_at < {now_ms})
ORDER BY id
LIMIT 1000
FOR UPDATE SKIP LOCKED
