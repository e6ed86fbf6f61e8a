//! # iterjob-mysql
//!
//! The MySQL and MariaDB store for iterjob: any number of worker processes on any
//! number of machines share one database, as with PostgreSQL. MySQL 8.0 and MariaDB
//! 10.6 or later (`SKIP LOCKED` is what claims need).
//!
//! * [`MySqlStore`]: an [`iterjob::store::Store`] in the database the URL names
//!   (tables `iterjob_*`, created and migrated on [`MySqlStore::connect`]). Claims
//!   with `SELECT … FOR UPDATE SKIP LOCKED`, leases on the server's clock, fencing
//!   by run token, partitions and dynamic splits, shared rate limits, job history.
//!   No `NOTIFY` in MySQL: a light watch query wakes idle workers within 100 ms of a
//!   job being added by another process (see [`MySqlOptions::watch_interval`]).
//! * [`Keyset`]: walks a table or query in key order, resumable from the last row's
//!   key ([`KeysetCursor`]), typed as MySQL types it (see [`MySqlDialect`]).
//! * [`Transactional`]: for a [`TransactionalJob`] whose data lives in the store's
//!   database, each item's work and the cursor past it commit in one transaction.
//!
//! # Quick start
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use iterjob::store::{NewJob, Store};
//! use iterjob_mysql::{Keyset, MySqlStore};
//! use sqlx::Row;
//!
//! # async fn demo() -> Result<(), iterjob::JobError> {
//! let store = MySqlStore::connect("mysql://root@127.0.0.1:3306/shop").await?;
//! store
//!     .job_insert_many(&[NewJob::new("reprice", serde_json::json!({"percent": 5}))])
//!     .await?;
//!
//! // a job's collection: the products, in id order, resumable from any row
//! let products = Keyset::table("products").key("id").filter("archived = 0");
//! let mut rows = std::pin::pin!(products.rows(store.pool(), None));
//! while let Some((row, cursor)) = rows.try_next().await? {
//!     let id: i64 = row.get("id");
//! #   let _ = (id, cursor);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Opening the store says what is wrong and what to do: a URL that does not parse or
//! names no database ([`Error::Config`](iterjob::Error::Config)), a server that cannot
//! be reached, a user without a permission (with the `GRANT` that helps), a schema
//! from a newer iterjob ([`Error::Corrupt`](iterjob::Error::Corrupt)).

mod dialect;
mod error;
mod events;
mod keyset;
mod migrate;
pub mod replica;
mod store;
pub mod transactional;

pub use dialect::{MySqlDialect, MySqlKeyKind};
pub use keyset::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_SIZE, DEFAULT_MAX_PAGE_TIME, KeyValue, Keyset,
    KeysetCursor, KeysetError,
};
pub use migrate::SCHEMA_VERSION;
pub use replica::ReplicaLag;
pub use store::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WATCH_INTERVAL, MySqlOptions, MySqlStore,
};
pub use transactional::{Transactional, TransactionalJob};

/// Re-exported so users need not depend on sqlx to configure the store or read rows.
pub use sqlx;
pub use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
