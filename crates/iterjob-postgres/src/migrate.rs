//! Schema migrations: the SQL files in `migrations/`, embedded with
//! [`sqlx::migrate!`], applied in order inside one transaction that holds a
//! transaction-scoped advisory lock (`pg_advisory_xact_lock`), so workers started
//! together migrate one after the other and the lock is gone with the transaction.
//!
//! Every object lives in the store's schema (default [`DEFAULT_SCHEMA`]): the SQL
//! files say `{schema}`, replaced by the validated, double-quoted schema name when
//! they are loaded ([`render`]). Applied versions are recorded in that schema's own
//! table, `schema_migrations`, not in sqlx's `_sqlx_migrations`: the application may
//! run its own sqlx migrations in the same database, with version numbers that would
//! collide with iterjob's.
//!
//! A schema migrated by a newer iterjob (a version above [`SCHEMA_VERSION`]) is
//! refused rather than used: an older iterjob could misread or damage its jobs.

use std::collections::BTreeMap;

use iterjob::{Error, Result};
use sqlx::migrate::Migrator;
use sqlx::{Executor, PgPool, Postgres, Transaction};

use crate::error::{Target, map_sqlx};

/// The migrations in `migrations/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The schema version this release writes and understands: the version of its
/// newest migration. A schema with a higher version is refused.
pub const SCHEMA_VERSION: i64 = 12;

/// The schema the store's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "iterjob";

/// The longest schema name accepted, so that the NOTIFY channel derived from it
/// (`iterjob:` + schema) fits PostgreSQL's 63-byte identifier limit.
pub const MAX_SCHEMA_LEN: usize = 55;

/// First key of the advisory lock that serializes migrations (the second is a hash
/// of the schema name, so stores in different schemas do not wait for each other).
const LOCK_CLASS: i32 = 0x6974_6a62; // "itjb"

/// The database's clock, in milliseconds since the Unix epoch: what `{now_ms}` in
/// the SQL files stands for. `clock_timestamp()` is the server's wall clock at the
/// moment of evaluation (not the transaction's start), so every worker, on any
/// machine, measures leases against the same clock.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The database's clock in microseconds since the Unix epoch: what `{now_us}` in the
/// SQL files stands for (rate-limit buckets).
const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// Checks that `schema` is a plain identifier iterjob can create and quote safely:
/// ASCII letters, digits and `_`, not starting with a digit, at most
/// [`MAX_SCHEMA_LEN`] bytes, not a system schema (`pg_…`, `information_schema`).
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain || schema.len() > MAX_SCHEMA_LEN {
        return Err(Error::Config(format!(
            "invalid PostgreSQL schema name `{schema}` for the iterjob store: use a plain \
             identifier (ASCII letters, digits and `_`, not starting with a digit, at most \
             {MAX_SCHEMA_LEN} characters), such as `{DEFAULT_SCHEMA}`"
        )));
    }
    let lower = schema.to_ascii_lowercase();
    if lower.starts_with("pg_") || lower == "information_schema" {
        return Err(Error::Config(format!(
            "PostgreSQL schema `{schema}` is reserved for the system; choose another schema \
             for the iterjob store, such as `{DEFAULT_SCHEMA}`"
        )));
    }
    Ok(())
}

/// The SQL of a query or migration file for `schema` (already validated): `{schema}`
/// becomes the double-quoted schema name, `{now_ms}` and `{now_us}` the database
/// clock in milliseconds and microseconds.
pub(crate) fn render(sql: &str, schema: &str) -> String {
    debug_assert!(validate_schema(schema).is_ok());
    sql.replace("{schema}", &format!("\"{schema}\""))
        .replace("{now_ms}", NOW_MS)
        .replace("{now_us}", NOW_US)
}

/// Creates or upgrades iterjob's tables in `target.schema` of the database behind
/// `pool`. Idempotent, and safe to run from many processes at once.
pub(crate) async fn run(pool: &PgPool, target: &Target) -> Result<()> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| map_sqlx(target, "starting the schema migration", e))?;
    match apply(&mut tx, target).await {
        Ok(()) => tx
            .commit()
            .await
            .map_err(|e| map_sqlx(target, "committing the schema migration", e)),
        Err(err) => {
            // release the advisory lock now, not when the connection is next used
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// The migration's work inside its transaction.
async fn apply(tx: &mut Transaction<'static, Postgres>, target: &Target) -> Result<()> {
    let schema = target.schema.as_str();
    let err = |what: &'static str| move |e: sqlx::Error| map_sqlx(target, what, e);
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_CLASS)
        .bind(schema)
        .execute(&mut **tx)
        .await
        .map_err(err("taking the schema migration lock"))?;

    // Create the schema only when it is missing: `CREATE SCHEMA IF NOT EXISTS` wants
    // the CREATE privilege on the database even when the schema exists.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut **tx)
            .await
            .map_err(err("looking up the schema"))?;
    if !exists {
        (&mut **tx)
            .execute(&*render("CREATE SCHEMA {schema}", schema))
            .await
            .map_err(err("creating the schema"))?;
    }
    (&mut **tx)
        .execute(&*render(
            "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version     BIGINT PRIMARY KEY,
             description TEXT   NOT NULL,
             checksum    BYTEA  NOT NULL,
             applied_at  BIGINT NOT NULL
         )",
            schema,
        ))
        .await
        .map_err(err("creating the schema bookkeeping table"))?;

    let applied: BTreeMap<i64, (String, Vec<u8>)> =
        sqlx::query_as::<_, (i64, String, Vec<u8>)>(&render(
            "SELECT version, description, checksum FROM {schema}.schema_migrations \
             ORDER BY version",
            schema,
        ))
        .fetch_all(&mut **tx)
        .await
        .map_err(err("reading the schema version"))?
        .into_iter()
        .map(|(version, description, checksum)| (version, (description, checksum)))
        .collect();

    if let Some((&newest, (description, _))) = applied.last_key_value()
        && newest > SCHEMA_VERSION
    {
        return Err(Error::Corrupt(format!(
            "PostgreSQL store {target} has schema version {newest} ({description}), written by \
             a newer iterjob; this iterjob (iterjob-postgres {}) understands schema version \
             {SCHEMA_VERSION} at most. Upgrade iterjob, or use another schema",
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
                    "PostgreSQL store {target}: schema migration {} ({}) was applied from \
                     different SQL than this iterjob ships; the schema was changed by hand or \
                     by a modified build. Restore it from a backup, or use another schema",
                    migration.version, migration.description
                )));
            }
            continue;
        }
        tracing::info!(
            store = %target,
            version = migration.version,
            description = %migration.description,
            "applying iterjob schema migration"
        );
        (&mut **tx)
            .execute(&*render(&migration.sql, schema))
            .await
            .map_err(|e| {
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
            "INSERT INTO {schema}.schema_migrations (version, description, checksum, applied_at) \
             VALUES ($1, $2, $3, {now_ms})",
            schema,
        ))
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .execute(&mut **tx)
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

    #[test]
    fn schema_names_are_validated() {
        for ok in ["iterjob", "jobs_2", "_x", "MixedCase"] {
            validate_schema(ok).unwrap();
        }
        for bad in [
            "",
            "1st",
            "a-b",
            "a.b",
            "x\"; DROP SCHEMA public; --",
            "pg_catalog",
            "information_schema",
            &"x".repeat(MAX_SCHEMA_LEN + 1),
        ] {
            let err = validate_schema(bad).unwrap_err().to_string();
            assert!(err.contains("schema"), "{err}");
        }
    }

    #[test]
    fn render_quotes_the_schema() {
        assert_eq!(
            render("SELECT * FROM {schema}.jobs WHERE run_at <= {now_ms}", "q1"),
            format!("SELECT * FROM \"q1\".jobs WHERE run_at <= {NOW_MS}")
        );
    }
}
