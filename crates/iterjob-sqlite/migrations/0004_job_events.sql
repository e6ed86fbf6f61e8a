-- iterjob schema, version 4: job history (the dashboard's job page, `show`).
--
-- One row per interruption, error, lease rescue or operator action, written in the
-- same transaction as the state change it records. Checkpoints and completion are
-- not recorded here: they are on the job row, and a completing run writes nothing
-- more than before. `state`, `cursor` and `items_done` are the job's right after.

CREATE TABLE iterjob_job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    event      TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    reason     TEXT,
    cursor     TEXT,
    items_done INTEGER NOT NULL DEFAULT 0,
    error      TEXT
);

-- a job's history, newest first
CREATE INDEX iterjob_job_events_job ON iterjob_job_events (job_id, id);
