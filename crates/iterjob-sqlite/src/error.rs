//! Turning sqlx errors into [`iterjob::Error`]s that say which database failed and
//! what to do about it.

use iterjob::Error;
use iterjob_sql::error::ContextError;

pub(crate) use iterjob_sql::error::is_unique_violation;

/// SQLite's primary result codes that get a message of their own.
/// <https://www.sqlite.org/rescode.html>
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The SQLite primary result code of a database error (extended codes reduced).
pub(crate) fn primary_code(err: &sqlx::Error) -> Option<i64> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    let code: i64 = db.code()?.parse().ok()?;
    Some(code & 0xff)
}

/// Maps a sqlx error raised while working on the database at `db` (a path or a
/// label) while doing `what` ("claiming jobs") into an [`Error`] that names both, and
/// says what to do where something can be done.
pub(crate) fn map_sqlx(db: &str, what: &str, err: sqlx::Error) -> Error {
    let hint = match primary_code(&err) {
        Some(SQLITE_NOTADB) => {
            return Error::Corrupt(format!(
                "SQLite store `{db}`: the file is not a SQLite database (it is corrupt, or not an \
                 iterjob store); point iterjob at another file, or move this one away to start \
                 a new store ({what}: {err})"
            ));
        }
        Some(SQLITE_CORRUPT) => {
            return Error::Corrupt(format!(
                "SQLite store `{db}`: the database file is corrupt; restore it from a backup or \
                 move it away to start a new store ({what}: {err})"
            ));
        }
        Some(SQLITE_BUSY) | Some(SQLITE_LOCKED) => Some(
            "the database is locked by another connection or process for longer than the busy \
             timeout; retry, make the other writer's transactions shorter, or raise the busy \
             timeout (SqliteOptions::busy_timeout)",
        ),
        Some(SQLITE_CANTOPEN) => Some(
            "cannot open the database file; check that its directory exists and that this \
             process may read and write both the file and the directory",
        ),
        Some(SQLITE_READONLY) => {
            Some("the database is read-only; check the file's and directory's permissions")
        }
        Some(SQLITE_FULL) => Some("the disk is full"),
        _ => None,
    };
    let context = match hint {
        Some(hint) => format!("SQLite store `{db}`: {what} failed: {hint}"),
        None => format!("SQLite store `{db}`: {what} failed"),
    };
    Error::Backend(Box::new(ContextError::new(context, err)))
}
