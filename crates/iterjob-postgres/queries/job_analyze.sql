-- After a large enqueue: fresh statistics, so the planner keeps claiming through the
-- partial index of claimable jobs instead of sorting every waiting job (without them
-- it assumes an empty table until autovacuum's analyze comes round).
ANALYZE {schema}.jobs
