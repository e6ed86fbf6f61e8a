//! [`ContextError`]: a driver error with the context it happened in, for the stores'
//! error messages.

use std::fmt;

/// A sqlx error with the context it happened in ("SQLite store `jobs.db`: claiming
/// jobs"). Its message carries the driver's message too, so it reads well on its
/// own; `source()` still exposes the driver error.
#[derive(Debug)]
pub struct ContextError {
    context: String,
    source: sqlx::Error,
}

impl ContextError {
    /// `context: source`.
    pub fn new(context: impl Into<String>, source: sqlx::Error) -> Self {
        ContextError {
            context: context.into(),
            source,
        }
    }

    /// The driver's error.
    pub fn driver(&self) -> &sqlx::Error {
        &self.source
    }
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// True for a violation of a UNIQUE index, on any database.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
