//! The schema: numbered migrations in `migrations/`, applied once each, in order, by
//! one process at a time (the named lock `iterjob_migrate`), and recorded with their
//! checksums in `iterjob_schema_migrations`.
//!
//! MySQL commits each DDL statement on its own, so a migration cannot be rolled back
//! as a whole: a process killed halfway leaves a migration partly applied, and the
//! next start says so instead of guessing (drop the half-made tables, or restore).

use std::collections::BTreeMap;

use iterjob::{Error, Result};
use sqlx::migrate::Migrator;
use sqlx::{Executor, MySqlPool};

use crate::error::{Target, map_sqlx};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The schema version this iterjob writes and understands.
pub const SCHEMA_VERSION: i64 = 8;

/// The server clock, in milliseconds since the epoch (constant within a statement).
const NOW_MS: &str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

/// The server clock, in microseconds since the epoch (constant within a statement).
const NOW_US: &str = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)";

/// How long a process waits for another's migration before giving up.
const LOCK_TIMEOUT_SECS: i64 = 60;

/// Substitutes the server clock into a query.
pub(crate) fn render(sql: &str) -> String {
    sql.replace("{now_ms}", NOW_MS).replace("{now_us}", NOW_US)
}

/// Applies the migrations not applied yet, under the migration lock.
pub(crate) async fn run(pool: &MySqlPool, target: &Target) -> Result<()> {
    let err = |what: &'static str| move |e: sqlx::Error| map_sqlx(target, what, e);
    let mut conn = pool
        .acquire()
        .await
        .map_err(err("connecting for the schema migration"))?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('iterjob_migrate', ?)")
        .bind(LOCK_TIMEOUT_SECS)
        .fetch_one(&mut *conn)
        .await
        .map_err(err("taking the schema migration lock"))?;
    if locked != Some(1) {
        return Err(Error::Backend(
            format!(
                "MySQL store {target}: another process held the schema migration lock \
                 (`iterjob_migrate`) for {LOCK_TIMEOUT_SECS} s; if none is migrating, a stuck \
                 session holds it: find it with `SELECT IS_USED_LOCK('iterjob_migrate')` and \
                 end it with KILL"
            )
            .into(),
        ));
    }
    let result = apply(&mut conn, target).await;
    let _ = sqlx::query("SELECT RELEASE_LOCK('iterjob_migrate')")
        .execute(&mut *conn)
        .await;
    result
}

async fn apply(conn: &mut sqlx::MySqlConnection, target: &Target) -> Result<()> {
    let err = |what: &'static str| move |e: sqlx::Error| map_sqlx(target, what, e);
    conn.execute(
        "CREATE TABLE IF NOT EXISTS iterjob_schema_migrations (
             version     BIGINT       NOT NULL PRIMARY KEY,
             description VARCHAR(255) NOT NULL,
             checksum    VARBINARY(64) NOT NULL,
             applied_at  BIGINT       NOT NULL
         ) ENGINE = InnoDB",
    )
    .await
    .map_err(err("creating the schema bookkeeping table"))?;
    let applied: BTreeMap<i64, (String, Vec<u8>)> = sqlx::query_as::<_, (i64, String, Vec<u8>)>(
        "SELECT version, description, checksum FROM iterjob_schema_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(err("reading the schema version"))?
    .into_iter()
    .map(|(version, description, checksum)| (version, (description, checksum)))
    .collect();
    if let Some((&newest, (description, _))) = applied.last_key_value()
        && newest > SCHEMA_VERSION
    {
        return Err(Error::Corrupt(format!(
            "MySQL store {target} has schema version {newest} ({description}), written by a \
             newer iterjob; this iterjob (iterjob-mysql {}) understands schema version \
             {SCHEMA_VERSION} at most. Upgrade iterjob, or use another database",
            env!("CARGO_PKG_VERSION"),
        )));
    }
    for migration in MIGRATOR.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        if let Some((_, checksum)) = applied.get(&migration.version) {
            if checksum.as_slice() != &*migration.checksum {
                return Err(Error::Corrupt(format!(
                    "MySQL store {target}: schema migration {} ({}) was applied from different \
                     SQL than this iterjob ships; the schema was changed by hand or by a \
                     modified build. Restore it from a backup, or use another database",
                    migration.version, migration.description
                )));
            }
            continue;
        }
        if migration.version == 1 {
            let existing: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'iterjob_jobs'",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(err("looking for iterjob's tables"))?;
            if existing > 0 {
                return Err(Error::Corrupt(format!(
                    "MySQL store {target}: table `iterjob_jobs` exists but no migration is \
                     recorded in `iterjob_schema_migrations`: a first migration was cut short, \
                     or the table is someone else's. Drop the iterjob_* tables if they hold \
                     nothing you need, or use another database"
                )));
            }
        }
        tracing::info!(
            store = %target,
            version = migration.version,
            description = %migration.description,
            "applying iterjob schema migration"
        );
        conn.execute(&*render(&migration.sql)).await.map_err(|e| {
            map_sqlx(
                target,
                &format!(
                    "applying schema migration {} ({})",
                    migration.version, migration.description
                ),
                e,
            )
        })?;
        sqlx::query(&render(
            "INSERT INTO iterjob_schema_migrations (version, description, checksum, applied_at) \
             VALUES (?, ?, ?, {now_ms})",
        ))
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .execute(&mut *conn)
        .await
        .map_err(err("recording the schema version"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_the_newest_migration() {
        let newest = MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .max();
        assert_eq!(newest, Some(SCHEMA_VERSION));
    }
}
