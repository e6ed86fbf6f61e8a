//! [`KeysetError`]: why a keyset walk cannot go on, in words a user can act on.

use iterjob::JobError;

use super::value::KeysetCursor;

/// Why a keyset walk cannot go on. Configuration mistakes, keys that do not identify
/// a row and SQL errors reach the job as [`JobError::Fatal`] (a retry would fail the
/// same way); a busy, unreachable or restarting database, or a pool with no free
/// connection, as [`JobError::Unavailable`] (a fault outside the job: back to the queue
/// without using up an attempt).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysetError {
    /// A table or column name is not a plain SQL identifier.
    #[error(
        "invalid {what} name `{name}` for a keyset enumerator: use a plain SQL identifier \
         (ASCII letters, digits and `_`, not starting with a digit{schema_hint})"
    )]
    InvalidIdentifier {
        /// `table`, `key column` or `column`.
        what: &'static str,
        /// The name given.
        name: String,
        /// Extra help for tables.
        schema_hint: &'static str,
    },

    /// No key column was given.
    #[error(
        "keyset enumerator over {relation} has no key column; call `.key(\"id\")` or `.keys([...])`"
    )]
    NoKey {
        /// The table or query.
        relation: String,
    },

    /// A key column was given twice.
    #[error("keyset enumerator over {relation}: key column `{column}` is given twice")]
    DuplicateKey {
        /// The table or query.
        relation: String,
        /// The repeated column.
        column: String,
    },

    /// The batch size is 0.
    #[error("keyset enumerator over {relation}: batch size must be at least 1")]
    ZeroBatchSize {
        /// The table or query.
        relation: String,
    },

    /// A cursor or bound has a different number of values than there are key columns.
    #[error(
        "keyset enumerator over {relation}: the {what} has {got} key value(s) but the keyset has \
         {expected} key column(s) ({keys}); was it saved by a job with other key columns?"
    )]
    CursorMismatch {
        /// The table or query.
        relation: String,
        /// `cursor`, `start bound` or `end bound`.
        what: &'static str,
        /// Key columns.
        expected: usize,
        /// Values in the cursor.
        got: usize,
        /// The key columns, comma separated.
        keys: String,
    },

    /// The table does not exist.
    #[error("keyset enumerator over {relation}: table `{table}` does not exist in the database")]
    MissingTable {
        /// The table or query.
        relation: String,
        /// The missing table, as the database named it.
        table: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A key, selected or filtered column does not exist.
    #[error(
        "keyset enumerator over {relation}: column `{column}` does not exist (check the key \
         columns, `.columns(...)` and the filter)"
    )]
    MissingColumn {
        /// The table or query.
        relation: String,
        /// The missing column, as the database named it.
        column: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A row's key is NULL although the keyset was told its keys never are.
    #[error(
        "keyset enumerator over {relation}: key column `{column}` is NULL in a row, but the \
         keyset was told its key columns are never NULL (`assume_not_null`); remove that call: \
         without it NULL keys are walked exactly, in the database's NULL order"
    )]
    NullKey {
        /// The table or query.
        relation: String,
        /// The key column.
        column: String,
    },

    /// A cursor or bound holds NULL for a key column that cannot be NULL.
    #[error(
        "keyset enumerator over {relation}: the {what} holds NULL for key column `{column}`, \
         which is NOT NULL (declared, or assumed with `assume_not_null`); no row compares with \
         NULL there: give a value, or drop `assume_not_null` if the column can be NULL"
    )]
    NullBound {
        /// The table or query.
        relation: String,
        /// `cursor`, `start bound` or `end bound`.
        what: &'static str,
        /// The key column.
        column: String,
    },

    /// Two rows have the same key: the key does not identify a row, so a walk that
    /// resumes after it would skip the rest of them.
    #[error(
        "keyset enumerator over {relation}: the key ({columns}) does not identify a row: at least \
         two rows have the key {key}, and a walk that resumes after a key skips the other rows \
         that share it; add a unique column as the last key, such as {suggestion}{late}"
    )]
    KeyNotUnique {
        /// The table or query.
        relation: String,
        /// The key columns, comma separated.
        columns: String,
        /// The key two rows share (boxed: errors stay small).
        key: Box<KeysetCursor>,
        /// A key that would identify a row: `.keys(["created_at", "id"])`.
        suggestion: String,
        /// Said when the tie was found at a cursor saved by an earlier run: which rows
        /// may not have been processed.
        late: String,
    },

    /// A key column has a type the cursor cannot hold.
    #[error(
        "keyset enumerator over {relation}: key column `{column}` has type {type_name}, which a \
         keyset cursor cannot hold; use a key of type {supported} (for example a query source \
         that casts the column)"
    )]
    UnsupportedKeyType {
        /// The table or query.
        relation: String,
        /// The key column.
        column: String,
        /// The column's type as the database names it.
        type_name: String,
        /// The types a key may have on this database.
        supported: &'static str,
    },

    /// A row could not be decoded (by `rows_as` or a malformed key value).
    #[error("keyset enumerator over {relation}: cannot decode a row: {source}")]
    Decode {
        /// The table or query.
        relation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The query failed.
    #[error("keyset enumerator over {relation}: query failed: {source}")]
    Database {
        /// The table or query.
        relation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
        /// Whether retrying later may help (decided by the database's dialect when
        /// the error was met).
        transient: bool,
    },
}

impl KeysetError {
    /// True when retrying later may help (the database was unreachable, busy,
    /// restarting, or a transaction conflicted), false for mistakes in the keyset's
    /// definition or the data.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KeysetError::Database {
                transient: true,
                ..
            }
        )
    }

    /// The error as a job sees it: unavailable (try again later, no attempt used) or
    /// fatal.
    pub fn into_job_error(self) -> JobError {
        if self.is_retryable() {
            JobError::unavailable(crate::transactional::UNAVAILABLE_BACKOFF, self)
        } else {
            JobError::fatal(self)
        }
    }
}
