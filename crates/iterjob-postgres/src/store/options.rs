//! [`PgOptions`]: how to open a [`PgStore`](super::PgStore) — the URL, the schema,
//! notifications, the pool — and where it lives, for messages.

use std::str::FromStr;
use std::time::Duration;

use iterjob::{Error, Result};
use sqlx::postgres::PgConnectOptions;

use crate::error::Target;
use crate::migrate::{DEFAULT_SCHEMA, validate_schema};

/// Connections in the pool unless [`PgOptions::max_connections`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long getting a pooled connection may take unless
/// [`PgOptions::acquire_timeout`] says otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first connection (made by [`PgStore::connect`] to check the URL) may
/// take unless [`PgOptions::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to open a [`PgStore`]: the URL plus iterjob's own settings.
///
/// ```no_run
/// use iterjob_postgres::{PgOptions, PgStore};
///
/// # async fn demo() -> iterjob::Result<()> {
/// let store = PgStore::connect_with(PgOptions {
///     schema: "billing_jobs".into(),
///     max_connections: 20,
///     ..PgOptions::new("postgres://app@db.internal:5432/app")
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?param=value…]`, anything
    /// sqlx's [`PgConnectOptions`] parses (`sslmode`, `application_name`, a Unix
    /// socket `host`, …). A `schema=NAME` parameter sets [`schema`](Self::schema)
    /// when that is left at its default.
    pub url: String,
    /// The schema that holds iterjob's tables (created by the migration if missing).
    /// Default [`DEFAULT_SCHEMA`] (`iterjob`). A plain identifier: ASCII letters,
    /// digits and `_`, not starting with a digit.
    pub schema: String,
    /// Announce claimable jobs with `NOTIFY` and wake waiting workers through a
    /// `LISTEN` connection (default true). Turn it off behind a transaction-pooling
    /// proxy (PgBouncer `pool_mode=transaction`), where `LISTEN` does not work:
    /// workers then find jobs by polling alone. A URL can turn it off too
    /// (`?notify=false`), for tools that only take a URL, such as the CLI.
    pub notify: bool,
    /// Connections in the pool (default [`DEFAULT_MAX_CONNECTIONS`]). A worker needs
    /// about one per concurrently running job at checkpoint time plus one for
    /// claiming; the `LISTEN` connection comes on top.
    pub max_connections: u32,
    /// How long getting a pooled connection may take before the operation fails
    /// (default [`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub acquire_timeout: Duration,
    /// How long the first connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Whether [`PgStore::connect_with`](crate::PgStore::connect_with) creates and
    /// upgrades the schema (default true). When false it changes nothing and
    /// refuses a schema that is missing, older or newer than this build's
    /// ([`PgStore::check_schema`](crate::PgStore::check_schema)): for read-only tools.
    pub migrate: bool,
}

impl Default for PgOptions {
    /// No URL (set one), schema `iterjob`, notify on, 10 connections.
    fn default() -> Self {
        PgOptions {
            url: String::new(),
            schema: DEFAULT_SCHEMA.to_string(),
            notify: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            migrate: true,
        }
    }
}

impl PgOptions {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            ..PgOptions::default()
        }
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Turns `LISTEN`/`NOTIFY` wake-ups on or off.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Turns the migration on connect on or off; see [`PgOptions::migrate`].
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Parses the URL: the connection options, the schema (from `?schema=` when
    /// [`schema`](Self::schema) is left at its default), and whether to `LISTEN`
    /// (off when [`notify`](Self::notify) is false or the URL says `?notify=false`).
    pub(super) fn resolve(&self) -> Result<(PgConnectOptions, String, bool)> {
        let raw = self.url.trim();
        if raw.is_empty() {
            return Err(Error::Config(
                "empty PostgreSQL URL; give one such as postgres://user@localhost:5432/app"
                    .to_string(),
            ));
        }
        let shown = redact(raw);
        let mut url = url::Url::parse(raw).map_err(|err| {
            Error::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {err}; expected \
                 postgres://user[:password]@host[:port]/database"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "`{shown}` is not a PostgreSQL URL; it must start with postgres:// or \
                 postgresql://"
            )));
        }
        let mut from_url = None;
        let mut notify_param = None;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| match k.as_ref() {
                "schema" => {
                    from_url = Some(v.into_owned());
                    None
                }
                "notify" => {
                    notify_param = Some(v.into_owned());
                    None
                }
                _ => Some((k.into_owned(), v.into_owned())),
            })
            .collect();
        let notify = match notify_param.as_deref() {
            None => self.notify,
            Some("true" | "on" | "1") => self.notify,
            Some("false" | "off" | "0") => false,
            Some(other) => {
                return Err(Error::Config(format!(
                    "PostgreSQL URL `{shown}`: `notify={other}` is neither true nor false; \
                     use notify=false behind a transaction-pooling proxy (PgBouncer \
                     pool_mode=transaction), where LISTEN cannot work"
                )));
            }
        };
        if from_url.is_some() || notify_param.is_some() {
            if pairs.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        let schema = match from_url {
            Some(s) if self.schema == DEFAULT_SCHEMA => s,
            Some(s) if s != self.schema => {
                return Err(Error::Config(format!(
                    "PostgreSQL URL `{shown}` names schema `{s}` but the options name schema \
                     `{}`; give it once",
                    self.schema
                )));
            }
            _ => self.schema.clone(),
        };
        validate_schema(&schema)?;
        let mut options = PgConnectOptions::from_str(url.as_str()).map_err(|err| {
            Error::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {err}; expected \
                 postgres://user[:password]@host[:port]/database"
            ))
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("iterjob");
        }
        Ok((options, schema, notify))
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

pub(super) fn target_of(options: &PgConnectOptions, schema: &str) -> Target {
    let host = options.get_host().to_string();
    let port = options.get_port();
    let address = match options.get_socket() {
        Some(dir) => format!("{} (Unix socket)", dir.display()),
        None => format!("{host}:{port}"),
    };
    let user = options.get_username().to_string();
    let database = options.get_database().unwrap_or(&user).to_string();
    Target {
        server: format!("postgres://{user}@{host}:{port}/{database}"),
        address,
        host,
        port,
        database,
        user,
        schema: schema.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_schema_and_hide_passwords() {
        let (options, schema, notify) = PgOptions::new("postgres://u:secret@h:5433/db?schema=s1")
            .resolve()
            .unwrap();
        assert_eq!(schema, "s1");
        assert!(notify, "LISTEN is on by default");
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_database(), Some("db"));
        let (_, schema, _) = PgOptions::new("postgres://u@h/db?sslmode=disable&schema=s2")
            .resolve()
            .unwrap();
        assert_eq!(schema, "s2");
        let (_, schema, _) = PgOptions::new("postgresql://u@h/db").resolve().unwrap();
        assert_eq!(schema, DEFAULT_SCHEMA);
        let err = PgOptions::new("postgres://u@h/db?schema=a")
            .schema("b")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("names schema `a`"), "{err}");
        let err = PgOptions::new("postgres://u@h/db?schema=bad-name")
            .resolve()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = PgOptions::new("mysql://u:secret@h/db")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = PgOptions::new("").resolve().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn a_url_can_turn_listen_off_for_a_pooling_proxy() {
        let resolve = |url: &str| PgOptions::new(url).resolve();
        let (options, schema, notify) =
            resolve("postgres://u@h:6432/db?notify=false&schema=s1&application_name=w").unwrap();
        assert!(!notify);
        assert_eq!(schema, "s1");
        assert_eq!(
            options.get_application_name(),
            Some("w"),
            "other parameters stay"
        );
        for off in ["false", "off", "0"] {
            assert!(
                !resolve(&format!("postgres://u@h/db?notify={off}"))
                    .unwrap()
                    .2
            );
        }
        for on in ["true", "on", "1"] {
            assert!(
                resolve(&format!("postgres://u@h/db?notify={on}"))
                    .unwrap()
                    .2
            );
        }
        // the options' own switch wins over a URL that leaves it on
        let (_, _, notify) = PgOptions::new("postgres://u@h/db?notify=true")
            .notify(false)
            .resolve()
            .unwrap();
        assert!(!notify);
        let err = resolve("postgres://u:secret@h/db?notify=maybe").unwrap_err();
        assert!(err.to_string().contains("`notify=maybe`"), "{err}");
        assert!(err.to_string().contains("PgBouncer"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
