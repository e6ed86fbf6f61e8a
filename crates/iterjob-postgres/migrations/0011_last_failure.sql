-- iterjob schema, version 11, for PostgreSQL: where and how the last run that
-- ended in an error failed (`JobRecord::last_failure`: the item's cursor, the
-- attempt, the worker, a panic's backtrace). NULL: no run has failed yet.
ALTER TABLE {schema}.jobs ADD COLUMN last_failure JSONB;
