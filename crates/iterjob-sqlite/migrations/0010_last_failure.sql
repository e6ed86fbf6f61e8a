-- iterjob schema, version 10, for SQLite: where and how the last run that ended in
-- an error failed (`JobRecord::last_failure`: the item's cursor, the attempt, the
-- worker, a panic's backtrace), as JSON. NULL: no run has failed yet.
ALTER TABLE iterjob_jobs ADD COLUMN last_failure TEXT;
