-- iterjob schema, version 8, for PostgreSQL: recurring schedules' state
-- (`Store::schedule_tick`). A row per schedule name: the last tick taken
-- (BIGINT milliseconds) and the job it enqueued. A tick is taken by moving
-- `last_tick` from the value the scheduler read (a compare-and-set), in the
-- transaction that inserts its job: one job per tick, however many workers race.

CREATE TABLE {schema}.schedules (
    name      TEXT   PRIMARY KEY,
    last_tick BIGINT NOT NULL,
    last_job  BIGINT
);
