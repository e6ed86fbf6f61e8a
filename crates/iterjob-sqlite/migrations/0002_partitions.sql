-- iterjob schema, version 2: partitioned jobs.
--
-- A partitioned job (a parent, `partitions` set) is split by its first run into child
-- jobs (`parent_id` set), one per partition; `split_requested` asks a running
-- partition to give half of what is left to a new one (dynamic splitting).

ALTER TABLE iterjob_jobs ADD COLUMN parent_id INTEGER REFERENCES iterjob_jobs (id);
ALTER TABLE iterjob_jobs ADD COLUMN partitions INTEGER;
ALTER TABLE iterjob_jobs ADD COLUMN split_requested INTEGER NOT NULL DEFAULT 0;

-- a parent's partitions (progress sums, cascades, finishing the parent)
CREATE INDEX iterjob_jobs_parent ON iterjob_jobs (parent_id) WHERE parent_id IS NOT NULL;

-- parents waiting for their partitions (the rescuer finishes those whose last
-- partition finished without finishing them)
CREATE INDEX iterjob_jobs_parents ON iterjob_jobs (state) WHERE partitions IS NOT NULL;
