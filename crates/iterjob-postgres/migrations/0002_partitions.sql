-- iterjob schema, version 2, for PostgreSQL: partitioned jobs.
--
-- A partitioned job (a parent, `partitions` set) is split by its first run into child
-- jobs (`parent_id` set), one per partition; `split_requested` asks a running
-- partition to give half of what is left to a new one (dynamic splitting). None of
-- the three columns is changed by checkpoints or heartbeats except `split_requested`,
-- which is in no index, so those stay HOT updates.

ALTER TABLE {schema}.jobs
    ADD COLUMN parent_id BIGINT REFERENCES {schema}.jobs (id),
    ADD COLUMN partitions INTEGER,
    ADD COLUMN split_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- A parent's partitions (progress sums, cascades, finishing the parent).
CREATE INDEX jobs_parent ON {schema}.jobs (parent_id) WHERE parent_id IS NOT NULL;

-- Parents waiting for their partitions (the rescuer finishes those whose last
-- partition finished without finishing them).
CREATE INDEX jobs_parents ON {schema}.jobs (state) WHERE partitions IS NOT NULL;
