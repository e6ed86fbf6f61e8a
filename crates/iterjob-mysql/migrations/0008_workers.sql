-- iterjob schema, version 8, for MySQL 8 and MariaDB 10.6+: worker presence
-- (`Store::worker_beat`, the dashboard's workers list).
--
-- One row per worker process: its id, its last beat (milliseconds) and the whole
-- presence as JSON text (`WorkerPresence`: host, pid, queues, slots in use …).
-- Each worker rewrites its row every presence interval and deletes it when it
-- stops cleanly; rows silent for a day are deleted by the next beat of any worker.

CREATE TABLE iterjob_workers (
    id      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    beat_at BIGINT       NOT NULL,
    info    MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;
