//! [`Keyset`]: the shared keyset enumerator ([`iterjob_sql::Keyset`]) on SQLite.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob_sqlite::{Keyset, KeysetCursor};
//! use sqlx::Row;
//!
//! # async fn demo(pool: sqlx::SqlitePool, saved: Option<KeysetCursor>) -> Result<(), iterjob::JobError> {
//! let products = Keyset::table("products")
//!     .keys(["created_at", "id"])
//!     .columns(["id", "name", "price"])
//!     .filter("archived = 0")
//!     .batch_size(500);
//! let mut rows = std::pin::pin!(products.rows(&pool, saved));
//! while let Some((row, cursor)) = rows.try_next().await? {
//!     let name: String = row.get("name");
//!     // … work on the row, then checkpoint `cursor` now and then
//! #   let _ = (name, cursor);
//! }
//! # Ok(())
//! # }
//! ```

use crate::dialect::SqliteDialect;

pub use crate::dialect::DEFAULT_MAX_PAGE_SIZE;
pub use iterjob_sql::keyset::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_TIME};
pub use iterjob_sql::{KeyValue, KeysetCursor, KeysetError};

/// A keyset enumerator over an SQLite table or query: rows in key order, resumable
/// from the last row's key. See [`iterjob_sql::Keyset`] for everything it does, and
/// [`SqliteDialect`] for how SQLite values become cursors.
///
/// On SQLite each page is collected by the connection's thread and streamed to the
/// job; pages grow up to [`DEFAULT_MAX_PAGE_SIZE`] rows.
pub type Keyset = iterjob_sql::Keyset<SqliteDialect>;
