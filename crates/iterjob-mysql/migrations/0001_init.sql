-- iterjob schema, version 1, for MySQL 8 and MariaDB 10.6+.
--
-- Every table iterjob owns starts with `iterjob_`, in the database the store's URL
-- names, next to (never among) the application's tables. Timestamps are BIGINT
-- milliseconds since the Unix epoch (UTC) from the database server's clock, as in
-- the PostgreSQL store; JSON values are LONGTEXT holding JSON text (MariaDB's JSON
-- type is LONGTEXT; MySQL's would rewrite the text). Text that is compared (kinds,
-- queues, unique keys) uses a binary collation, so `Report` and `report` are two
-- kinds, as on the other stores.
--
-- MySQL has no partial indexes: the claim index is on a generated column that is
-- NULL for jobs that cannot be claimed, and the unique index on `unique_active`, a
-- generated column that is the unique key while the job is unfinished and NULL once
-- it finished (a UNIQUE index allows any number of NULLs).
--
-- Applied by `MySqlStore::connect` / `Store::migrate` under the named lock
-- `iterjob_migrate`; the applied versions are recorded in
-- `iterjob_schema_migrations`.

CREATE TABLE iterjob_jobs (
    id               BIGINT       NOT NULL AUTO_INCREMENT,
    kind             VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    queue            VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    priority         INT          NOT NULL DEFAULT 0,
    state            VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    params           LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `cursor`         LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    items_done       BIGINT       NOT NULL DEFAULT 0,
    items_total      BIGINT       NULL,
    attempts         BIGINT       NOT NULL DEFAULT 0,
    max_attempts     BIGINT       NOT NULL,
    interruptions    BIGINT       NOT NULL DEFAULT 0,
    crashes          BIGINT       NOT NULL DEFAULT 0,
    runs             BIGINT       NOT NULL DEFAULT 0,
    last_error       LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    unique_key       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_at       BIGINT       NOT NULL,
    run_at           BIGINT       NOT NULL,
    started_at       BIGINT       NULL,
    finished_at      BIGINT       NULL,
    checkpointed_at  BIGINT       NULL,
    running_ms       BIGINT       NOT NULL DEFAULT 0,
    worker_id        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    lease_expires_at BIGINT       NULL,
    pause_requested  BOOLEAN      NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN      NOT NULL DEFAULT FALSE,
    -- fencing token of the current run; NULL when no run holds the job
    run_token        BIGINT       NULL,
    -- a partitioned job's partitions point at it; it asked for `partitions`
    parent_id        BIGINT       NULL,
    `partitions`     INT          NULL,
    split_requested  BOOLEAN      NOT NULL DEFAULT FALSE,
    -- the claim order of a claimable job (negated priority: one ascending index
    -- serves `ORDER BY priority DESC, run_at, id` on every version), NULL otherwise
    claim_rank       INT AS (CASE WHEN state IN ('queued', 'retrying') THEN -priority END) STORED,
    -- the unique key while the job is unfinished, NULL once it finished
    unique_active    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (
                         CASE WHEN state IN ('completed', 'failed', 'cancelled') THEN NULL
                              ELSE unique_key END) STORED,
    PRIMARY KEY (id),
    -- claiming: claimable jobs in claim order; a claim walks the first few entries
    KEY iterjob_jobs_claim (claim_rank, run_at, id),
    -- listing and counting by state and queue; rescuing running jobs
    KEY iterjob_jobs_state_queue (state, queue, id),
    -- listing by kind
    KEY iterjob_jobs_kind (kind, id),
    -- a parent's partitions
    KEY iterjob_jobs_parent (parent_id),
    -- parents waiting for their partitions
    KEY iterjob_jobs_parents (`partitions`, state),
    -- at most one unfinished job per unique key
    UNIQUE KEY iterjob_jobs_unique_key (unique_active)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE iterjob_job_events (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    job_id     BIGINT       NOT NULL,
    at         BIGINT       NOT NULL,
    event      VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state      VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    reason     VARCHAR(32)  CHARACTER SET ascii COLLATE ascii_bin NULL,
    `cursor`   LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    items_done BIGINT       NOT NULL DEFAULT 0,
    error      LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    PRIMARY KEY (id),
    KEY iterjob_job_events_job (job_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Rate-limit buckets (GCRA): a bucket's theoretical arrival time, in microseconds.
CREATE TABLE iterjob_rate_limits (
    `key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    tat   BIGINT NOT NULL,
    PRIMARY KEY (`key`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
