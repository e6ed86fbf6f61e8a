-- iterjob schema, version 12, for PostgreSQL: worker presence
-- (`Store::worker_beat`, the dashboard's workers list).
--
-- One row per worker process: its id, its last beat (milliseconds) and the whole
-- presence as JSON text (`WorkerPresence`: host, pid, queues, slots in use …).
-- Each worker rewrites its row every presence interval and deletes it when it
-- stops cleanly; rows silent for a day are deleted by the next beat of any worker.

CREATE TABLE {schema}.workers (
    id      TEXT   NOT NULL PRIMARY KEY,
    beat_at BIGINT NOT NULL,
    info    TEXT   NOT NULL
);
