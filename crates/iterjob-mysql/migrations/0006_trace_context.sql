-- iterjob schema, version 6, for MySQL 8 and MariaDB 10.6+: the enqueuer's trace
-- context (`NewJob::trace_context`, a W3C `traceparent`), so a job's runs join the
-- trace of the request or task that enqueued it. NULL: enqueued outside any trace.
-- Partitions copy their parent's.
ALTER TABLE iterjob_jobs ADD COLUMN trace_context VARCHAR(512) NULL;
