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
        Some(code @ (SQLITE_CANTOPEN | SQLITE_READONLY)) => {
            if let Some(why) = not_writable(db) {
                return Error::Backend(Box::new(ContextError::new(
                    format!("SQLite store `{db}`: {what} failed: {why}"),
                    err,
                )));
            }
            Some(if code == SQLITE_CANTOPEN {
                "cannot open the database file; check that its directory exists and that this \
                 process may read and write both the file and the directory"
            } else {
                "the database is read-only; check the file's and directory's permissions"
            })
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

/// Why this process cannot write the database `db` (a path): its file system is
/// mounted read-only, or the file (or, when it does not exist yet, its directory)
/// is not writable for this process. `None` when it can, or cannot tell.
pub(crate) fn not_writable(db: &str) -> Option<String> {
    #[cfg(unix)]
    {
        use rustix::fs::{Access, access};
        use rustix::io::Errno;
        let path = std::path::Path::new(db);
        let target = if path.exists() {
            path
        } else {
            match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => std::path::Path::new("."),
            }
        };
        match access(target, Access::WRITE_OK) {
            Err(Errno::ROFS) => Some(format!(
                "the file system holding `{}` is mounted read-only, and a store writes (the \
                 database, and its -wal and -shm files beside it); remount it read-write, or \
                 copy the database to a writable place",
                target.display()
            )),
            Err(Errno::ACCESS) => Some(format!(
                "this process may not write `{}`; a store writes the database and \
                 its -wal and -shm files beside it: fix the owner or mode of the file and its \
                 directory, or run as their owner",
                target.display()
            )),
            _ => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = db;
        None
    }
}
