-- iterjob schema, version 3: rate-limit buckets shared by every worker process on
-- this database file (`Store::rate_acquire`, `iterjob::RateLimit`).
--
-- One row per bucket (a kind's name, or a custom key). `tat` is the bucket's
-- theoretical arrival time, INTEGER microseconds since the Unix epoch (UTC): the
-- moment from which the next unit may be used (GCRA).

CREATE TABLE iterjob_rate_limits (
    key TEXT    PRIMARY KEY,
    tat INTEGER NOT NULL
) WITHOUT ROWID;
