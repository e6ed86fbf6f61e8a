-- `Transactional`: the cursor advance of one item (or batch), the FIRST statement of
-- the transaction that then does the item's work, fenced by the run token, so the
-- work and the cursor commit together or not at all. Being an UPDATE, it locks the
-- job's row at once and holds the lock to the end of the transaction: no other run
-- can change the job meanwhile. `crashes` is written before `items_done` (MySQL's
-- SET list runs left to right).
-- The lease is renewed too (the item's transaction is the run's heartbeat).
-- ? cursor (JSON text), ? items (twice), ? the lease (ms), ? id, ? run_token
UPDATE iterjob_jobs
SET `cursor` = ?,
    crashes = CASE WHEN ? > 0 THEN 0 ELSE crashes END,
    items_done = items_done + ?,
    checkpointed_at = {now_ms},
    lease_expires_at = GREATEST(COALESCE(lease_expires_at, 0), {now_ms} + ?)
WHERE id = ? AND run_token = ? AND state = 'running'
