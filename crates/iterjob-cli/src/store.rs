//! Opening the store a `--database-url` names.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use iterjob::Store;
use iterjob_postgres::PgStore;
use iterjob_sqlite::SqliteStore;

/// The default database: the SQLite file `iterjob.db` in the current directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://iterjob.db";

/// An open, migrated store.
#[derive(Clone)]
pub struct OpenStore {
    /// The store, for the runtime and admin commands.
    pub store: Arc<dyn Store>,
    /// The SQLite store, when the URL named one (the demo keeps its products there).
    pub sqlite: Option<SqliteStore>,
    /// The PostgreSQL store, when the URL named one.
    pub postgres: Option<PgStore>,
}

/// Opens the store for `url` and applies migrations:
///
/// * `postgres://user[:password]@host[:port]/database` (or `postgresql://`): the
///   PostgreSQL store, in schema `iterjob`; add `?schema=NAME` for another schema.
///   Every command works on it except `demo`, which keeps its products in SQLite.
/// * `sqlite://path`, `sqlite:path`, or a path ending in `.db`/`.sqlite`/`.sqlite3`:
///   the SQLite store.
pub async fn open_store(url: &str) -> Result<OpenStore> {
    let url = url.trim();
    if url.is_empty() {
        bail!(
            "the database URL is empty; pass --database-url sqlite://iterjob.db or \
             postgres://user@host/database (or set ITERJOB_DATABASE_URL)"
        );
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let postgres = PgStore::connect(url)
            .await
            .context("opening the iterjob store on PostgreSQL")?;
        return Ok(OpenStore {
            store: Arc::new(postgres.clone()),
            sqlite: None,
            postgres: Some(postgres),
        });
    }
    let looks_sqlite = url.starts_with("sqlite:")
        || !url.contains("://")
            && (url.ends_with(".db")
                || url.ends_with(".sqlite")
                || url.ends_with(".sqlite3")
                || url.contains('/'));
    if !looks_sqlite {
        bail!(
            "unsupported database URL `{url}`; use sqlite://PATH (for example \
             sqlite://iterjob.db) or postgres://user@host/database"
        );
    }
    let sqlite = SqliteStore::connect(url)
        .await
        .with_context(|| format!("opening the iterjob store at {url}"))?;
    Ok(OpenStore {
        store: Arc::new(sqlite.clone()),
        sqlite: Some(sqlite),
        postgres: None,
    })
}
