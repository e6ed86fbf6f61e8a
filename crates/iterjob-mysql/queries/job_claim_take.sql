-- `Store::job_claim`, second statement: the picked jobs become `running`, each with
-- its own fresh token (`{tokens}`: `WHEN ? THEN ?` per job, id then token).
-- `runs` and `started_at` are updated before anything reads them.
-- ? tokens (id, token)…, ? worker_id, ? lease end (ms), ? now (ms), ? ids…
UPDATE iterjob_jobs
SET state = 'running',
    run_token = CASE id {tokens} END,
    worker_id = ?,
    lease_expires_at = ?,
    runs = runs + 1,
    started_at = COALESCE(started_at, ?)
WHERE id IN ({ids})
