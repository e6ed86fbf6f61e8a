//! Turning sqlx errors into [`iterjob::Error`]s that say which database failed and
//! what to do about it.

use std::fmt;

use iterjob::Error;
use iterjob_sql::error::ContextError;

/// SQLSTATE codes that get a message of their own.
/// <https://www.postgresql.org/docs/current/errcodes-appendix.html>
const INSUFFICIENT_PRIVILEGE: &str = "42501";
const INVALID_CATALOG_NAME: &str = "3D000";
const INVALID_PASSWORD: &str = "28P01";
const INVALID_AUTHORIZATION: &str = "28000";
const TOO_MANY_CONNECTIONS: &str = "53300";
const READ_ONLY_TRANSACTION: &str = "25006";
const DISK_FULL: &str = "53100";
const ADMIN_SHUTDOWN: &str = "57P01";
const CANNOT_CONNECT_NOW: &str = "57P03";
/// `prepared statement "sqlx_s_1" already exists`: another client's statement on the
/// same server connection, which only a transaction-pooling proxy hands around.
const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// `prepared statement "sqlx_s_3" does not exist`: likewise, the other way round.
const INVALID_SQL_STATEMENT_NAME: &str = "26000";

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    db.code().map(|code| code.into_owned())
}

pub(crate) use iterjob_sql::error::is_unique_violation;

/// Where the store lives, for messages: host, port, database, user and schema, never
/// the password.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `postgres://user@host:port/database`.
    pub(crate) server: String,
    /// `host:port` (or the socket directory).
    pub(crate) address: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) user: String,
    pub(crate) schema: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (schema `{}`)", self.server, self.schema)
    }
}

/// Maps a sqlx error raised while working on the store at `target` while doing
/// `what` ("claiming jobs") into an [`Error`] that names both, and says what to do
/// where something can be done.
pub(crate) fn map_sqlx(target: &Target, what: &str, err: sqlx::Error) -> Error {
    let hint: Option<String> = match &err {
        sqlx::Error::Io(_) => Some(format!(
            "cannot reach the PostgreSQL server at {}; check that it is running and accepts \
             connections there (`pg_isready -h {} -p {}`), and that the URL's host and port \
             are right",
            target.address, target.host, target.port
        )),
        sqlx::Error::Tls(_) => Some(format!(
            "the TLS handshake with {} failed; check `sslmode` in the URL and the server's \
             certificate",
            target.address
        )),
        sqlx::Error::PoolTimedOut => Some(format!(
            "no connection to {} became available in time: the server is unreachable, slow \
             to accept connections, or every pooled connection is busy; check the server, \
             or raise PgOptions::max_connections / acquire_timeout",
            target.address
        )),
        sqlx::Error::PoolClosed => Some("the store's connection pool was closed".to_string()),
        _ => match sqlstate(&err).as_deref() {
            Some(INSUFFICIENT_PRIVILEGE) => Some(format!(
                "database user `{user}` lacks a permission iterjob needs; as an administrator, \
                 run `GRANT USAGE, CREATE ON SCHEMA \"{schema}\" TO \"{user}\"` (and \
                 `GRANT CREATE ON DATABASE \"{db}\" TO \"{user}\"` if the schema does not exist \
                 yet) plus `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \
                 \"{schema}\" TO \"{user}\"`, or choose another schema (PgOptions::schema or \
                 `?schema=` in the URL)",
                user = target.user,
                schema = target.schema,
                db = target.database,
            )),
            Some(INVALID_CATALOG_NAME) => Some(format!(
                "database `{db}` does not exist on {addr}; create it (`createdb -h {host} -p \
                 {port} {db}`) or fix the database name in the URL",
                db = target.database,
                addr = target.address,
                host = target.host,
                port = target.port,
            )),
            Some(INVALID_PASSWORD) | Some(INVALID_AUTHORIZATION) => Some(format!(
                "the server at {} refused user `{}`; check the user name and password in the \
                 URL (or PGPASSWORD / ~/.pgpass) and the server's pg_hba.conf",
                target.address, target.user
            )),
            Some(TOO_MANY_CONNECTIONS) => Some(
                "the server has no connection slots left; lower PgOptions::max_connections on \
                 the workers, put a pooler in front of the server, or raise the server's \
                 max_connections"
                    .to_string(),
            ),
            Some(READ_ONLY_TRANSACTION) => Some(
                "the server is read-only (a standby, or default_transaction_read_only is on); \
                 point iterjob at the primary"
                    .to_string(),
            ),
            Some(DISK_FULL) => Some("the database server's disk is full".to_string()),
            Some(DUPLICATE_PREPARED_STATEMENT) | Some(INVALID_SQL_STATEMENT_NAME) => Some(format!(
                "the prepared statements of this connection clash with another client's: a \
                 pooler in transaction mode (PgBouncer pool_mode=transaction) is between \
                 iterjob and {addr}, and it does not track prepared statements; sqlx names \
                 its statements, so use PgBouncer 1.21 or later with max_prepared_statements \
                 set (e.g. 200), or pool_mode=session; in transaction mode also add \
                 `notify=false` to the URL (LISTEN cannot work there)",
                addr = target.address
            )),
            Some(ADMIN_SHUTDOWN) | Some(CANNOT_CONNECT_NOW) => {
                Some("the server is shutting down or starting up; retry in a moment".to_string())
            }
            _ => None,
        },
    };
    if matches!(sqlstate(&err).as_deref(), Some(INVALID_CATALOG_NAME)) {
        return Error::Config(format!(
            "PostgreSQL store {target}: {what} failed: {}: {err}",
            hint.unwrap_or_default()
        ));
    }
    let context = match hint {
        Some(hint) => format!("PostgreSQL store {target}: {what} failed: {hint}"),
        None => format!("PostgreSQL store {target}: {what} failed"),
    };
    Error::Backend(Box::new(ContextError::new(context, err)))
}
