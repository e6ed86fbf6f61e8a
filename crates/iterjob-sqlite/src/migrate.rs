//! Schema migrations: the SQL files in `migrations/`, embedded with
//! [`sqlx::migrate!`], applied in order inside one `BEGIN IMMEDIATE` transaction.
//!
//! Applied versions are recorded in iterjob's own table, `iterjob_schema_migrations`,
//! not in sqlx's `_sqlx_migrations`: the store usually shares its database with the
//! application's own tables (a job writing what it computes next to its cursor), and
//! the application may run its own sqlx migrations there, with version numbers that
//! would collide with iterjob's.
//!
//! A database migrated by a newer iterjob (a version above [`SCHEMA_VERSION`]) is
//! refused rather than used: an older iterjob could misread or damage its jobs.

use std::collections::BTreeMap;

use iterjob::{Error, Result};
use sqlx::migrate::Migrator;
use sqlx::{Executor, SqlitePool};

use crate::error::map_sqlx;

/// The migrations in `migrations/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The schema version this release writes and understands: the version of its
/// newest migration. A database with a higher version is refused.
pub const SCHEMA_VERSION: i64 = 11;

const CREATE_BOOKKEEPING: &str = "\
CREATE TABLE IF NOT EXISTS iterjob_schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    checksum    BLOB    NOT NULL,
    applied_at  INTEGER NOT NULL
)";

const SELECT_APPLIED: &str =
    "SELECT version, description, checksum FROM iterjob_schema_migrations ORDER BY version";

const INSERT_APPLIED: &str = "INSERT INTO iterjob_schema_migrations \
     (version, description, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)";

/// Creates or upgrades iterjob's tables in the database behind `pool` (`db` names it
/// in errors). Idempotent, and safe to run from several processes at once: the
/// `BEGIN IMMEDIATE` transaction serializes them.
pub(crate) async fn run(pool: &SqlitePool, db: &str) -> Result<()> {
    // Up to date already (every start after the first): a read tells, without the
    // write lock `BEGIN IMMEDIATE` takes, so a worker starts even while another
    // process holds that lock for long (stopped mid-transaction, a long import).
    if up_to_date(pool).await {
        return Ok(());
    }
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|err| map_sqlx(db, "starting the schema migration", err))?;
    sqlx::query(CREATE_BOOKKEEPING)
        .execute(&mut *tx)
        .await
        .map_err(|err| map_sqlx(db, "creating the schema bookkeeping table", err))?;
    let applied: BTreeMap<i64, (String, Vec<u8>)> =
        sqlx::query_as::<_, (i64, String, Vec<u8>)>(SELECT_APPLIED)
            .fetch_all(&mut *tx)
            .await
            .map_err(|err| map_sqlx(db, "reading the schema version", err))?
            .into_iter()
            .map(|(version, description, checksum)| (version, (description, checksum)))
            .collect();

    if let Some((&newest, (description, _))) = applied.last_key_value()
        && newest > SCHEMA_VERSION
    {
        return Err(Error::Corrupt(format!(
            "SQLite store `{db}` has schema version {newest} ({description}), written by a newer \
             iterjob; this iterjob (iterjob-sqlite {}) understands schema version \
             {SCHEMA_VERSION} at most. Upgrade iterjob, or use another database file",
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
                    "SQLite store `{db}`: schema migration {} ({}) was applied from different \
                     SQL than this iterjob ships; the schema was changed by hand or by a \
                     modified build. Restore the database from a backup, or use another file",
                    migration.version, migration.description
                )));
            }
            continue;
        }
        tracing::info!(
            db,
            version = migration.version,
            description = %migration.description,
            "applying iterjob schema migration"
        );
        tx.execute(&*migration.sql).await.map_err(|err| {
            map_sqlx(
                db,
                &format!(
                    "applying schema migration {} ({})",
                    migration.version, migration.description
                ),
                err,
            )
        })?;
        sqlx::query(INSERT_APPLIED)
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .bind(iterjob::store::now_millis())
            .execute(&mut *tx)
            .await
            .map_err(|err| map_sqlx(db, "recording the schema version", err))?;
    }
    tx.commit()
        .await
        .map_err(|err| map_sqlx(db, "committing the schema migration", err))?;
    Ok(())
}

/// True when every migration this build ships is recorded, with its checksum. Any
/// doubt (no bookkeeping table, a read error, a difference) is false: the caller
/// then runs the full migration, which reports what is wrong.
async fn up_to_date(pool: &SqlitePool) -> bool {
    let Ok(applied) = sqlx::query_as::<_, (i64, String, Vec<u8>)>(SELECT_APPLIED)
        .fetch_all(pool)
        .await
    else {
        return false;
    };
    let applied: BTreeMap<i64, Vec<u8>> = applied
        .into_iter()
        .map(|(version, _, checksum)| (version, checksum))
        .collect();
    let mut expected = 0;
    for migration in MIGRATOR.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        expected += 1;
        match applied.get(&migration.version) {
            Some(checksum) if checksum.as_slice() == &*migration.checksum => {}
            _ => return false,
        }
    }
    applied.len() == expected
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
