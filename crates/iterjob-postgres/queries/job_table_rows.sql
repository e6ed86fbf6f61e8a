-- After `ANALYZE`: the jobs table's row count as the planner now sees it, which sets
-- how many more jobs this store enqueues before it analyzes again (a tenth of it).
SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = '{schema}.jobs'::regclass
