//! [`Keyset`]: the shared keyset enumerator ([`iterjob_sql::Keyset`]) on MySQL and
//! MariaDB.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob_mysql::{Keyset, KeysetCursor};
//! use sqlx::Row;
//!
//! # async fn demo(pool: sqlx::MySqlPool, saved: Option<KeysetCursor>) -> Result<(), iterjob::JobError> {
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

use crate::dialect::MySqlDialect;

pub use crate::dialect::DEFAULT_MAX_PAGE_SIZE;
pub use iterjob_sql::keyset::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_TIME};
pub use iterjob_sql::{KeyValue, KeysetCursor, KeysetError};

/// A keyset enumerator over a MySQL or MariaDB table or query: rows in key order,
/// resumable from the last row's key. See [`iterjob_sql::Keyset`] for everything it
/// does, and [`MySqlDialect`] for how MySQL types and collations become cursors.
///
/// Composite keys are compared written out, `a >= ? AND (a > ? OR (a = ? AND b >
/// ?))`, which both MySQL and MariaDB turn into an index range scan (MariaDB scans
/// the whole index for the row-value form `(a, b) > (?, ?)`). Rows are streamed as
/// they arrive, and the next page's query is sent as soon as a page has arrived.
pub type Keyset = iterjob_sql::Keyset<MySqlDialect>;
