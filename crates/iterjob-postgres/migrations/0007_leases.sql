-- iterjob schema, version 7, for PostgreSQL: named leases (`Store::lease_acquire`),
-- so that work one process at a time should do (retention, schedules) is done by one
-- worker of all those sharing the schema. A row per lease: its holder and when it
-- expires (BIGINT milliseconds, the database's clock).

CREATE TABLE {schema}.leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
