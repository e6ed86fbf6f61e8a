-- iterjob schema, version 3, for PostgreSQL: rate-limit buckets shared by every
-- worker on every machine using this schema (`Store::rate_acquire`,
-- `iterjob::RateLimit`).
--
-- One row per bucket (a kind's name, or a custom key). `tat` is the bucket's
-- theoretical arrival time, BIGINT microseconds since the Unix epoch on the database
-- server's clock: the moment from which the next unit may be used (GCRA). A
-- reservation updates only `tat`, which no index covers: a HOT update, with room
-- left on the page for it.

CREATE TABLE {schema}.rate_limits (
    key TEXT   PRIMARY KEY,
    tat BIGINT NOT NULL
) WITH (fillfactor = 50);
