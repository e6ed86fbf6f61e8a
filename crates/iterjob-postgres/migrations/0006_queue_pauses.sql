-- iterjob schema, version 6, for PostgreSQL: paused queues (`Store::queue_pause`).
--
-- One row per paused queue, deleted when it is resumed. Claims leave the queues
-- named here out of the list they were asked for (read once per claim, a few rows
-- at most); workers read the table every `control_interval` to stop the runs of a
-- queue paused in `interrupt` mode.

CREATE TABLE {schema}.queue_pauses (
    queue TEXT   PRIMARY KEY,
    since BIGINT NOT NULL,
    mode  TEXT   NOT NULL CHECK (mode IN ('interrupt', 'let_run'))
);
