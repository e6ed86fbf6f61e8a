//! [`MySqlOptions`]: how to open a [`MySqlStore`](super::MySqlStore) — the URL, the
//! pool, the wake-ups — and where it lives, for messages.

use std::str::FromStr;
use std::time::Duration;

use iterjob::{Error, Result};
use sqlx::mysql::MySqlConnectOptions;

use crate::error::Target;

/// Connections in the pool unless [`MySqlOptions::max_connections`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long getting a pooled connection may take unless
/// [`MySqlOptions::acquire_timeout`] says otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first connection (made by [`MySqlStore::connect`](super::MySqlStore::connect)
/// to check the URL) may take unless [`MySqlOptions::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a store's watch task asks the server for new claimable jobs, unless
/// [`MySqlOptions::watch_interval`] says otherwise.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// How to open a [`MySqlStore`](super::MySqlStore): the URL plus the pool.
///
/// ```no_run
/// use iterjob_mysql::{MySqlOptions, MySqlStore};
///
/// # async fn demo() -> iterjob::Result<()> {
/// let store = MySqlStore::connect_with(MySqlOptions {
///     max_connections: 20,
///     ..MySqlOptions::new("mysql://app@db.internal:3306/app")
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MySqlOptions {
    /// `mysql://user[:password]@host[:port]/database[?param=value…]` (also
    /// `mariadb://`), anything sqlx's [`MySqlConnectOptions`] parses (`ssl-mode`,
    /// `socket`, …). The database holds iterjob's tables (`iterjob_*`).
    pub url: String,
    /// Connections in the pool (default [`DEFAULT_MAX_CONNECTIONS`]). A worker needs
    /// about one per concurrently running job at checkpoint time plus one for
    /// claiming.
    pub max_connections: u32,
    /// How long getting a pooled connection may take before the operation fails
    /// (default [`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub acquire_timeout: Duration,
    /// How long the first connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// How often the watch task asks the server whether jobs were added or became
    /// claimable, to wake this process's waiting workers (default
    /// [`DEFAULT_WATCH_INTERVAL`]): MySQL has no `NOTIFY`. Each ask is two index
    /// lookups on a connection of the pool. `Duration::ZERO` turns it off: workers
    /// then find other processes' jobs by polling (`WorkerConfig::poll_interval`).
    pub watch_interval: Duration,
    /// Whether [`MySqlStore::connect_with`](crate::MySqlStore::connect_with) creates
    /// and upgrades the tables (default true). When false it changes nothing and
    /// refuses tables that are missing, older or newer than this build's
    /// ([`MySqlStore::check_schema`](crate::MySqlStore::check_schema)).
    pub migrate: bool,
}

impl Default for MySqlOptions {
    /// No URL (set one), 10 connections.
    fn default() -> Self {
        MySqlOptions {
            url: String::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            watch_interval: DEFAULT_WATCH_INTERVAL,
            migrate: true,
        }
    }
}

impl MySqlOptions {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        MySqlOptions {
            url: url.into(),
            ..MySqlOptions::default()
        }
    }

    /// Turns the migration on connect on or off; see [`MySqlOptions::migrate`].
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets how often the watch task asks the server (`Duration::ZERO`: never).
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval;
        self
    }

    /// Parses the URL.
    pub(super) fn resolve(&self) -> Result<MySqlConnectOptions> {
        let raw = self.url.trim();
        if raw.is_empty() {
            return Err(Error::Config(
                "empty MySQL URL; give one such as mysql://user@localhost:3306/app".to_string(),
            ));
        }
        let shown = redact(raw);
        let url = url::Url::parse(raw).map_err(|err| {
            Error::Config(format!(
                "invalid MySQL URL `{shown}`: {err}; expected \
                 mysql://user[:password]@host[:port]/database"
            ))
        })?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(Error::Config(format!(
                "`{shown}` is not a MySQL URL; it must start with mysql:// or mariadb://"
            )));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(Error::Config(format!(
                "MySQL URL `{shown}` names no database; add one: \
                 mysql://user@host:3306/DATABASE (iterjob's tables go there)"
            )));
        }
        let mut normalized = url.clone();
        if normalized.scheme() == "mariadb" {
            let rest = &raw["mariadb".len()..];
            normalized = url::Url::parse(&format!("mysql{rest}"))
                .map_err(|err| Error::Config(format!("invalid MySQL URL `{shown}`: {err}")))?;
        }
        MySqlConnectOptions::from_str(normalized.as_str()).map_err(|err| {
            Error::Config(format!(
                "invalid MySQL URL `{shown}`: {err}; expected \
                 mysql://user[:password]@host[:port]/database"
            ))
        })
    }
}

/// The URL with its password replaced by `***`, for messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(unparseable URL)".to_string(),
    }
}

/// Where the store lives.
pub(super) fn target_of(options: &MySqlConnectOptions) -> Target {
    let host = options.get_host().to_string();
    let port = options.get_port();
    let address = match options.get_socket() {
        Some(socket) => format!("{} (Unix socket)", socket.display()),
        None => format!("{host}:{port}"),
    };
    let user = options.get_username().to_string();
    let database = options.get_database().unwrap_or("").to_string();
    Target {
        server: format!("mysql://{user}@{host}:{port}/{database}"),
        address,
        host,
        port,
        database,
        user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        let options = MySqlOptions::new("mysql://u:secret@h:3307/db")
            .resolve()
            .unwrap();
        assert_eq!(options.get_port(), 3307);
        assert_eq!(options.get_database(), Some("db"));
        let options = MySqlOptions::new("mariadb://u@h/db").resolve().unwrap();
        assert_eq!(options.get_database(), Some("db"));
        let err = MySqlOptions::new("mysql://u:secret@h/")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("names no database"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = MySqlOptions::new("postgres://u@h/db")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("not a MySQL URL"), "{err}");
        assert!(matches!(
            MySqlOptions::new("").resolve(),
            Err(Error::Config(_))
        ));
    }
}
