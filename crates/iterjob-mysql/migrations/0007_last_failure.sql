-- iterjob schema, version 7, for MySQL 8 and MariaDB 10.6+: where and how the last
-- run that ended in an error failed (`JobRecord::last_failure`: the item's cursor,
-- the attempt, the worker, a panic's backtrace), as JSON text. NULL: no run has
-- failed yet.
ALTER TABLE iterjob_jobs ADD COLUMN last_failure MEDIUMTEXT NULL;
