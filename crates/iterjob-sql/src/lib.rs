//! # iterjob-sql
//!
//! The SQL layer under iterjob's stores, written once and generic over
//! [`sqlx::Database`] through a small [`Dialect`] trait — the part `sqlx-core` plays
//! for sqlx's drivers. Users reach it through a store crate (`iterjob-sqlite`,
//! `iterjob-postgres`, `iterjob-mysql`), which names each type for its database.
//!
//! * [`keyset`]: [`Keyset`], an enumerator over a table or query in key order,
//!   resumable from the last row's key ([`KeysetCursor`]), with bounded ranges,
//!   quantile partitions and midpoints for dynamic splitting; NULL keys walked
//!   exactly, keys that do not identify a row caught before they can skip one.
//! * [`transactional`]: [`TransactionalJob`] and the [`Transactional`] adapter: each
//!   item's work and the cursor advance commit in one transaction, so each item's
//!   effect happens exactly once.
//! * [`record`]: job rows decoded into [`JobRecord`](iterjob::JobRecord)s, the same
//!   way on every store; [`release`]: what a release writes per outcome.
//! * [`throttles`]: the operators' throttle switches, the same table and SQL on
//!   every store.
//! * [`pool`]: [`pool::hygienic`], the connection hygiene every store's pool gets (a
//!   connection left inside a failed transaction is closed, never reused).
//! * [`dialect`]: what differs between databases — parameters, quoting, row values,
//!   NULL order, key types, the schema's say on a key, which errors are transient.
//!
//! A store crate holds only what is its own: its queries, connections, migrations and
//! notifications, plus its [`Dialect`] and [`TransactionalStore`] implementations.
//! The testkit's keyset and transactional suites run on every store.
//!
//! No database driver is compiled here: each store crate brings its own.

#![forbid(unsafe_code)]

pub mod dialect;
pub mod error;
pub mod keyset;
pub mod pool;
pub mod record;
pub mod release;
pub mod schema;
mod statement;
pub mod throttles;
pub mod transactional;
pub mod workers;

pub use dialect::{Dialect, ErrorClass, KeyFacts, TableName};
pub use keyset::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGE_TIME, KeyValue, Keyset, KeysetCursor, KeysetError,
};
pub use transactional::{Transactional, TransactionalJob, TransactionalStore};

/// Re-exported so store crates and users name the same sqlx.
pub use sqlx;
