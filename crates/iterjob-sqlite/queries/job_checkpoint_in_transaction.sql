-- `Transactional`: the cursor advance of one item (or batch), written in the same
-- `BEGIN IMMEDIATE` transaction as the item's work and fenced by the run token, so
-- the work and the cursor commit together or not at all. Right-hand sides see the
-- old row. `items_done` is incremented: at every item boundary the stored value
-- equals the run's own count (its value at claim plus the items counted since), so
-- the runtime's later checkpoints and release write the same number.
-- The lease is renewed too: the item's transaction is the run's heartbeat, so a job
-- whose items hold the write lock does not lose its lease to a heartbeat that waits
-- behind them.
-- ?1 id, ?2 run_token, ?3 now, ?4 cursor (JSON), ?5 items this item counts for,
-- ?6 the lease (ms)
UPDATE iterjob_jobs
SET cursor = ?4,
    crashes = CASE WHEN ?5 > 0 THEN 0 ELSE crashes END,
    items_done = items_done + ?5,
    checkpointed_at = ?3,
    lease_expires_at = MAX(COALESCE(lease_expires_at, 0), ?3 + ?6)
WHERE id = ?1 AND run_token = ?2 AND state = 'running'
