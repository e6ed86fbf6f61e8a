-- iterjob schema, version 6: named leases (`Store::lease_acquire`), so that work one
-- process at a time should do (retention, schedules) is done by one worker of all
-- those sharing the file. A row per lease: its holder and when it expires (INTEGER
-- milliseconds since the Unix epoch).

CREATE TABLE iterjob_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
