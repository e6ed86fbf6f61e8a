-- iterjob schema, version 7: recurring schedules' state (`Store::schedule_tick`).
-- A row per schedule name: the last tick taken (INTEGER milliseconds) and the job
-- it enqueued. A tick is taken by moving `last_tick` from the value the scheduler
-- read (a compare-and-set), in the transaction that inserts its job: one job per
-- tick, however many workers race.

CREATE TABLE iterjob_schedules (
    name      TEXT    PRIMARY KEY,
    last_tick INTEGER NOT NULL,
    last_job  INTEGER
) WITHOUT ROWID;
