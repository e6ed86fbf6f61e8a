-- iterjob schema, version 5: paused queues (`Store::queue_pause`).
--
-- One row per paused queue, deleted when it is resumed. Claims leave the queues
-- named here out of the list they were asked for; workers read the table every
-- `control_interval` to stop the runs of a queue paused in `interrupt` mode.

CREATE TABLE iterjob_queue_pauses (
    queue TEXT    PRIMARY KEY,
    since INTEGER NOT NULL,
    mode  TEXT    NOT NULL CHECK (mode IN ('interrupt', 'let_run'))
) WITHOUT ROWID;
