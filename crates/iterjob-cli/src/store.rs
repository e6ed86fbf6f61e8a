//! Opening the store a `--database-url` names: SQLite, PostgreSQL or MySQL, as far as
//! the binary was built with them (cargo features `sqlite`, `postgres`, `mysql`).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use iterjob::Store;

pub(crate) use crate::demo::Backend;

/// The default database: the SQLite file `iterjob.db` in the current directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://iterjob.db";

/// The databases this binary can open, for messages: `sqlite, postgres, mysql`.
pub(crate) fn built_with() -> String {
    let features = [
        (cfg!(feature = "sqlite"), "sqlite"),
        (cfg!(feature = "postgres"), "postgres"),
        (cfg!(feature = "mysql"), "mysql"),
    ];
    let on: Vec<&str> = features
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    if on.is_empty() {
        "no database".to_string()
    } else {
        on.join(", ")
    }
}

/// The error for a URL whose database this binary was built without.
#[allow(dead_code)] // not with every feature on
fn missing(url: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`{url}` names a {feature} database, but this binary was built without the \
         `{feature}` feature (it has: {}); rebuild with `--features {feature}`",
        built_with()
    )
}

/// An open, migrated store.
#[derive(Clone)]
pub struct OpenStore {
    /// The store, for the runtime and admin commands.
    pub store: Arc<dyn Store>,
    /// The same store by its database, for the demo (its products live there).
    pub(crate) backend: Backend,
}

impl std::fmt::Debug for OpenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Which store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

fn kind_of(url: &str) -> Option<Kind> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Some(Kind::Postgres);
    }
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        return Some(Kind::MySql);
    }
    let looks_sqlite = url.starts_with("sqlite:")
        || !url.contains("://")
            && (url.ends_with(".db")
                || url.ends_with(".sqlite")
                || url.ends_with(".sqlite3")
                || url.contains('/'));
    looks_sqlite.then_some(Kind::Sqlite)
}

/// The file a SQLite URL names, when it names one (not `:memory:`).
pub(crate) fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let url = url.trim();
    if kind_of(url) != Some(Kind::Sqlite) {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// For commands that only look at (or act on) jobs already stored: refuses a
/// SQLite database file that does not exist instead of creating an empty one (a
/// command run from the wrong directory would otherwise report "no jobs").
fn require_existing(url: &str) -> Result<()> {
    if let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        let shown = if path.is_relative() {
            std::env::current_dir()
                .map(|dir| dir.join(&path).display().to_string())
                .unwrap_or_else(|_| path.display().to_string())
        } else {
            path.display().to_string()
        };
        bail!(
            "no iterjob database at {shown}: run this where the database is, or point \
             --database-url (or ITERJOB_DATABASE_URL) at it; `migrate` creates an empty one, \
             and `enqueue`, `worker` and `demo` create it as they start"
        );
    }
    Ok(())
}

/// Opens the store for `url` and applies migrations:
///
/// * `sqlite://path`, `sqlite:path`, or a path ending in `.db`/`.sqlite`/`.sqlite3`:
///   the SQLite store (feature `sqlite`).
/// * `postgres://user[:password]@host[:port]/database` (or `postgresql://`): the
///   PostgreSQL store, in schema `iterjob`; add `?schema=NAME` for another schema
///   (feature `postgres`).
/// * `mysql://user[:password]@host[:port]/database` (or `mariadb://`): the MySQL
///   and MariaDB store, its tables (`iterjob_*`) in that database (feature `mysql`).
pub async fn open_store(url: &str) -> Result<OpenStore> {
    open(url, true).await
}

/// Opens the store for `url` as [`open_store`] does, but without creating or
/// migrating anything: the database must exist and hold the schema this build
/// writes, else the error says to run `migrate`. For commands that only look at
/// or act on stored jobs, which an operator may run with another build than the
/// workers'.
pub async fn open_existing_store(url: &str) -> Result<OpenStore> {
    require_existing(url)?;
    open(url, false).await
}

async fn open(url: &str, migrate: bool) -> Result<OpenStore> {
    let url = url.trim();
    if url.is_empty() {
        bail!(
            "the database URL is empty; pass --database-url sqlite://iterjob.db, \
             postgres://user@host/database or mysql://user@host/database (or set \
             ITERJOB_DATABASE_URL)"
        );
    }
    let Some(kind) = kind_of(url) else {
        bail!(
            "unsupported database URL `{url}`; use sqlite://PATH (for example \
             sqlite://iterjob.db), postgres://user@host/database or mysql://user@host/database"
        );
    };
    match kind {
        Kind::Sqlite => {
            #[cfg(feature = "sqlite")]
            {
                let sqlite = if migrate {
                    iterjob_sqlite::SqliteStore::connect(url).await
                } else {
                    iterjob_sqlite::SqliteStore::connect_existing(url).await
                }
                .with_context(|| format!("opening the iterjob store at {url}"))?;
                Ok(OpenStore {
                    store: Arc::new(sqlite.clone()),
                    backend: Backend::Sqlite(sqlite),
                })
            }
            #[cfg(not(feature = "sqlite"))]
            Err(missing(url, "sqlite"))
        }
        Kind::Postgres => {
            #[cfg(feature = "postgres")]
            {
                let postgres = iterjob_postgres::PgStore::connect_with(
                    iterjob_postgres::PgOptions::new(url).migrate(migrate),
                )
                .await
                .context("opening the iterjob store on PostgreSQL")?;
                Ok(OpenStore {
                    store: Arc::new(postgres.clone()),
                    backend: Backend::Postgres(postgres),
                })
            }
            #[cfg(not(feature = "postgres"))]
            Err(missing(url, "postgres"))
        }
        Kind::MySql => {
            #[cfg(feature = "mysql")]
            {
                let mysql = iterjob_mysql::MySqlStore::connect_with(
                    iterjob_mysql::MySqlOptions::new(url).migrate(migrate),
                )
                .await
                .context("opening the iterjob store on MySQL")?;
                Ok(OpenStore {
                    store: Arc::new(mysql.clone()),
                    backend: Backend::MySql(mysql),
                })
            }
            #[cfg(not(feature = "mysql"))]
            Err(missing(url, "mysql"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        use std::path::PathBuf;
        assert_eq!(sqlite_file("sqlite://x.db"), Some(PathBuf::from("x.db")));
        assert_eq!(
            sqlite_file("sqlite:dir/x.db?mode=rwc"),
            Some(PathBuf::from("dir/x.db"))
        );
        assert_eq!(
            sqlite_file("jobs.sqlite"),
            Some(PathBuf::from("jobs.sqlite"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/d"), None);
    }

    #[test]
    fn urls_name_their_store() {
        assert_eq!(kind_of("sqlite://x.db"), Some(Kind::Sqlite));
        assert_eq!(kind_of("jobs.db"), Some(Kind::Sqlite));
        assert_eq!(kind_of("postgres://u@h/db"), Some(Kind::Postgres));
        assert_eq!(kind_of("mariadb://u@h/db"), Some(Kind::MySql));
        assert_eq!(kind_of("redis://h"), None);
    }
}
