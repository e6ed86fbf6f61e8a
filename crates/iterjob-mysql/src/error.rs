//! Turning sqlx errors into [`iterjob::Error`]s that say which database failed and
//! what to do about it.

use std::fmt;

use iterjob::Error;
use iterjob_sql::error::ContextError;

pub(crate) use iterjob_sql::error::is_unique_violation;

/// MySQL server error numbers that get a message of their own.
/// <https://dev.mysql.com/doc/mysql-errors/8.0/en/server-error-reference.html>
const ACCESS_DENIED: u16 = 1045;
const DB_ACCESS_DENIED: u16 = 1044;
const TABLE_ACCESS_DENIED: u16 = 1142;
const UNKNOWN_DATABASE: u16 = 1049;
const TOO_MANY_CONNECTIONS: u16 = 1040;
const READ_ONLY: u16 = 1290;
const DISK_FULL: u16 = 1021;
const TABLE_FULL: u16 = 1114;
const LOCK_WAIT_TIMEOUT: u16 = 1205;
const DEADLOCK: u16 = 1213;
const SHUTDOWN: u16 = 1053;

/// The MySQL error number of a database error.
pub(crate) fn mysql_code(err: &sqlx::Error) -> Option<u16> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

/// Where the store lives, for messages: host, port, database and user, never the
/// password.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `mysql://user@host:port/database`.
    pub(crate) server: String,
    /// `host:port` (or the socket).
    pub(crate) address: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) user: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.server)
    }
}

/// Maps a sqlx error raised while working on the store at `target` while doing
/// `what` ("claiming jobs") into an [`Error`] that names both, and says what to do
/// where something can be done.
pub(crate) fn map_sqlx(target: &Target, what: &str, err: sqlx::Error) -> Error {
    let hint: Option<String> = match &err {
        sqlx::Error::Io(_) => Some(format!(
            "cannot reach the MySQL server at {}; check that it is running and accepts \
             connections there (`mysqladmin -h {} -P {} ping`), and that the URL's host and \
             port are right",
            target.address, target.host, target.port
        )),
        sqlx::Error::Tls(_) => Some(format!(
            "the TLS handshake with {} failed; check `ssl-mode` in the URL and the server's \
             certificate",
            target.address
        )),
        sqlx::Error::PoolTimedOut => Some(format!(
            "no connection to {} became available in time: the server is unreachable, slow \
             to accept connections, or every pooled connection is busy; check the server, \
             or raise MySqlOptions::max_connections / acquire_timeout",
            target.address
        )),
        sqlx::Error::PoolClosed => Some("the store's connection pool was closed".to_string()),
        _ => match mysql_code(&err) {
            Some(ACCESS_DENIED) => Some(format!(
                "the server at {} refused user `{}`; check the user name and password in the \
                 URL and the user's host in `mysql.user`",
                target.address, target.user
            )),
            Some(DB_ACCESS_DENIED | TABLE_ACCESS_DENIED) => Some(format!(
                "database user `{user}` lacks a permission iterjob needs; as an administrator, \
                 run `GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON \
                 `{db}`.* TO '{user}'@'%'`",
                user = target.user,
                db = target.database,
            )),
            Some(UNKNOWN_DATABASE) => Some(format!(
                "database `{db}` does not exist on {addr}; create it (`mysql -h {host} -P {port} \
                 -e 'CREATE DATABASE {db}'`) or fix the database name in the URL",
                db = target.database,
                addr = target.address,
                host = target.host,
                port = target.port,
            )),
            Some(TOO_MANY_CONNECTIONS) => Some(
                "the server has no connection slots left; lower MySqlOptions::max_connections \
                 on the workers, or raise the server's max_connections"
                    .to_string(),
            ),
            Some(READ_ONLY) => Some(
                "the server is read-only (a replica, or read_only is on); point iterjob at the \
                 primary"
                    .to_string(),
            ),
            Some(DISK_FULL | TABLE_FULL) => Some("the database server's disk is full".to_string()),
            Some(LOCK_WAIT_TIMEOUT) => Some(
                "a row stayed locked by another transaction beyond innodb_lock_wait_timeout; \
                 retry, and keep the transactions of jobs' work short"
                    .to_string(),
            ),
            Some(DEADLOCK) => Some("a deadlock with another transaction; retry".to_string()),
            Some(SHUTDOWN) => Some("the server is shutting down; retry in a moment".to_string()),
            _ => None,
        },
    };
    if mysql_code(&err) == Some(UNKNOWN_DATABASE) {
        return Error::Config(format!(
            "MySQL store {target}: {what} failed: {}: {err}",
            hint.unwrap_or_default()
        ));
    }
    let context = match hint {
        Some(hint) => format!("MySQL store {target}: {what} failed: {hint}"),
        None => format!("MySQL store {target}: {what} failed"),
    };
    Error::Backend(Box::new(ContextError::new(context, err)))
}
