-- iterjob schema, version 10, for PostgreSQL: the enqueuer's trace context
-- (`NewJob::trace_context`, a W3C `traceparent`), so a job's runs join the trace
-- of the request or task that enqueued it. NULL: enqueued outside any trace.
-- Partitions copy their parent's.
ALTER TABLE {schema}.jobs ADD COLUMN trace_context TEXT;
