-- iterjob schema, version 4, for MySQL 8 and MariaDB 10.6+: recurring schedules'
-- state (`Store::schedule_tick`). A row per schedule name: the last tick taken
-- (BIGINT milliseconds) and the job it enqueued. A tick is taken by moving
-- `last_tick` from the value the scheduler read (a compare-and-set), in the
-- transaction that inserts its job: one job per tick, however many workers race.

CREATE TABLE iterjob_schedules (
    name      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    last_tick BIGINT       NOT NULL,
    last_job  BIGINT       NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB;
