//! [`Keyset`]: the shared keyset enumerator ([`iterjob_sql::Keyset`]) on PostgreSQL.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob_postgres::{Keyset, KeysetCursor};
//! use sqlx::Row;
//!
//! # async fn demo(pool: sqlx::PgPool, saved: Option<KeysetCursor>) -> Result<(), iterjob::JobError> {
//! let products = Keyset::table("shop.products")
//!     .keys(["created_at", "id"])
//!     .columns(["id", "name", "price"])
//!     .filter("archived = false")
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

use crate::dialect::PgDialect;

pub use crate::dialect::DEFAULT_MAX_PAGE_SIZE;
pub use iterjob_sql::keyset::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_TIME};
pub use iterjob_sql::{KeyValue, KeysetCursor, KeysetError};

/// A keyset enumerator over a PostgreSQL table or query: rows in key order,
/// resumable from the last row's key. See [`iterjob_sql::Keyset`] for everything it
/// does, and [`PgDialect`] for how PostgreSQL types become cursors.
///
/// [`rows`](iterjob_sql::Keyset::rows) streams each page: the job works on a page's
/// first rows while the rest are still arriving, and with a held connection the next
/// page's query is sent as soon as a page has arrived, so a walk runs about as fast
/// as one streaming `SELECT` (see `BENCHMARKS.md`). Pages grow up to
/// [`DEFAULT_MAX_PAGE_SIZE`] rows while each ends within half of
/// [`max_page_time`](iterjob_sql::Keyset::max_page_time).
pub type Keyset = iterjob_sql::Keyset<PgDialect>;
