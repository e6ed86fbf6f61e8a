-- iterjob schema, version 3, for MySQL 8 and MariaDB 10.6+: named leases
-- (`Store::lease_acquire`), so that work one process at a time should do (retention,
-- schedules) is done by one worker of all those sharing the database. A row per
-- lease: its holder and when it expires (BIGINT milliseconds, the server's clock).

CREATE TABLE iterjob_leases (
    name       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    holder     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    expires_at BIGINT       NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB;
