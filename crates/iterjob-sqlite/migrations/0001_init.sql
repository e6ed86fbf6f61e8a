-- iterjob schema, version 1.
--
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC), JSON values are
-- TEXT, booleans are INTEGER 0/1. Applied by `SqliteStore::connect` / `Store::migrate`;
-- the applied versions are recorded in `iterjob_schema_migrations`.

CREATE TABLE iterjob_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL CHECK (state IN (
                         'queued', 'running', 'paused', 'completed',
                         'retrying', 'failed', 'cancelled')),
    params           TEXT    NOT NULL,
    cursor           TEXT,
    items_done       INTEGER NOT NULL DEFAULT 0,
    items_total      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    interruptions    INTEGER NOT NULL DEFAULT 0,
    crashes          INTEGER NOT NULL DEFAULT 0,
    runs             INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    unique_key       TEXT,
    created_at       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    checkpointed_at  INTEGER,
    running_ms       INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    lease_expires_at INTEGER,
    pause_requested  INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- fencing token of the current run; NULL when no run holds the job
    run_token        INTEGER
);

-- claiming: the claimable jobs in claim order, so a claim reads the first few
-- matching entries instead of sorting every waiting job (job_claim.sql names it)
CREATE INDEX iterjob_jobs_claimable
    ON iterjob_jobs (priority DESC, run_at, id)
    WHERE state IN ('queued', 'retrying');

-- by state and queue: listing, counting, rescuing running jobs
CREATE INDEX iterjob_jobs_claim
    ON iterjob_jobs (state, queue, priority DESC, run_at, id);

-- listing by kind (state and queue filters use the claim index)
CREATE INDEX iterjob_jobs_kind ON iterjob_jobs (kind, id);

-- at most one unfinished job per unique key
CREATE UNIQUE INDEX iterjob_jobs_unique_key
    ON iterjob_jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND state NOT IN ('completed', 'failed', 'cancelled');
