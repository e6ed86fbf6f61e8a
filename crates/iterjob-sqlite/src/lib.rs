//! The embedded default store for iterjob, and a keyset enumerator over SQL tables.
//!
//! * [`SqliteStore`]: an [`iterjob::store::Store`] in one SQLite file (WAL mode,
//!   `synchronous=FULL`), created and migrated on [`SqliteStore::connect`]. Several
//!   processes may share the file: claims are atomic and every write of a run is
//!   fenced by its token.
//! * [`Keyset`]: walks a table or query in key order, a page per query
//!   (`WHERE (keys) > (cursor) ORDER BY keys LIMIT n`), resumable from the last row's
//!   key ([`KeysetCursor`]).
//! * [`Transactional`]: for a [`TransactionalJob`] whose data lives in the store's
//!   database, each item's work and the cursor past it commit in one transaction, so
//!   each item's effect happens exactly once, even across crashes.
//!
//! # Quick start
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob::store::{NewJob, Store};
//! use iterjob_sqlite::{Keyset, SqliteStore};
//! use sqlx::Row;
//!
//! # async fn demo() -> Result<(), iterjob::JobError> {
//! // the store: created if missing, migrated, ready for several workers
//! let store = SqliteStore::connect("sqlite://shop.db").await?;
//! store
//!     .job_insert_many(&[NewJob::new("reprice", serde_json::json!({"percent": 5}))])
//!     .await?;
//!
//! // a job's collection: the products, in id order, resumable from any row
//! let products = Keyset::table("products").key("id").filter("archived = 0");
//! let saved = None; // the job's last checkpointed cursor
//! let mut rows = std::pin::pin!(products.rows(store.pool(), saved));
//! while let Some((row, cursor)) = rows.try_next().await? {
//!     let id: i64 = row.get("id");
//!     sqlx::query("UPDATE products SET price = price * 1.05 WHERE id = ?")
//!         .bind(id)
//!         .execute(store.pool()) // the same database as the store
//!         .await?;
//!     // the runtime checkpoints `cursor` now and then; resuming from it yields the
//!     // next product
//! #   let _ = cursor;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Opening the store says what is wrong with the path and what to do: a missing
//! directory ([`Error::Config`](iterjob::Error::Config)), a file that is not an SQLite
//! database or a schema from a newer iterjob ([`Error::Corrupt`](iterjob::Error::Corrupt)),
//! a database locked beyond the busy timeout ([`Error::Backend`](iterjob::Error::Backend)).

mod dialect;
mod error;
mod events;
mod keyset;
mod migrate;
mod store;
pub mod transactional;

pub use dialect::SqliteDialect;
pub use keyset::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_SIZE, DEFAULT_MAX_PAGE_TIME, KeyValue, Keyset,
    KeysetCursor, KeysetError,
};
pub use migrate::SCHEMA_VERSION;
pub use store::{DEFAULT_BUSY_TIMEOUT, SqliteStore};
pub use transactional::{Transactional, TransactionalJob};

/// Re-exported so users need not depend on sqlx to configure the store or read rows.
pub use sqlx;
pub use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow, SqliteSynchronous};
