-- iterjob schema, version 2, for MySQL 8 and MariaDB 10.6+: paused queues
-- (`Store::queue_pause`).
--
-- One row per paused queue, deleted when it is resumed. Claims read it first and
-- leave the queues named here out of the list they were asked for; workers read it
-- every `control_interval` to stop the runs of a queue paused in `interrupt` mode.

CREATE TABLE iterjob_queue_pauses (
    queue VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    since BIGINT       NOT NULL,
    mode  VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (queue)
) ENGINE = InnoDB;
