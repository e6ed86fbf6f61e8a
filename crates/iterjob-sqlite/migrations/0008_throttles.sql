-- iterjob schema, version 8: the operators' throttle switches (`Store::throttle_on`,
-- `iterjob throttle on|off`).
--
-- One row per scope: `queue` and `kind`, '' standing for every queue or every kind
-- (no NULL in the key). `until_at` (milliseconds) is NULL while the switch stays on
-- until switched off. Every worker reads the table each `control_interval`.

CREATE TABLE iterjob_throttles (
    queue    TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    since    INTEGER NOT NULL,
    until_at INTEGER,
    reason   TEXT,
    PRIMARY KEY (queue, kind)
) WITHOUT ROWID;
