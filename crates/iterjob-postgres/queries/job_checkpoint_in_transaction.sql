-- `Transactional`: the cursor advance of one item (or batch), written as the FIRST
-- statement of the transaction that then does the item's work, and fenced by the run
-- token, so the work and the cursor commit together or not at all. Being an UPDATE,
-- it takes the job row's lock at once and holds it to the end of the transaction:
-- no other run can change the job meanwhile (a rescue or takeover waits, then sees
-- the committed row). Right-hand sides see the old row. `items_done` is incremented:
-- at every item boundary the stored value equals the run's own count (its value at
-- claim plus the items counted since), so the runtime's later checkpoints and
-- release write the same number. Changes no indexed column, so it is a HOT update.
-- The lease is renewed too (the item's transaction is the run's heartbeat).
-- $1 id, $2 run_token, $3 cursor (JSON text), $4 items this item counts for,
-- $5 the lease (ms)
UPDATE {schema}.jobs
SET cursor = $3::jsonb,
    crashes = CASE WHEN $4::bigint > 0 THEN 0 ELSE crashes END,
    items_done = items_done + $4::bigint,
    checkpointed_at = {now_ms},
    lease_expires_at = GREATEST(COALESCE(lease_expires_at, 0), {now_ms} + $5::bigint)
WHERE id = $1 AND run_token = $2 AND state = 'running'
