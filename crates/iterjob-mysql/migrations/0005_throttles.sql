-- iterjob schema, version 5, for MySQL 8 and MariaDB 10.6+: the operators' throttle
-- switches (`Store::throttle_on`, `iterjob throttle on|off`).
--
-- One row per scope: `queue` and `kind`, '' standing for every queue or every kind
-- (no NULL in the key). `until_at` (milliseconds) is NULL while the switch stays on
-- until switched off. Every worker reads the table each `control_interval`.

CREATE TABLE iterjob_throttles (
    queue    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kind     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    since    BIGINT       NOT NULL,
    until_at BIGINT       NULL,
    reason   TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    PRIMARY KEY (queue, kind)
) ENGINE = InnoDB;
