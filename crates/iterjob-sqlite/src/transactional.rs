//! Transactional iteration on SQLite: an item's work and the cursor advance past it
//! commit in one SQLite transaction. The adapter is the shared
//! [`iterjob_sql::Transactional`]; this module gives it the SQLite store.
//!
//! # When to use it
//!
//! When the job's own data lives **in the same SQLite file as the job store** (the
//! [`SqliteStore`] the worker uses), and the work of an item is a write to that data
//! (update a row, insert a derived row, move a balance). Write the kind as a
//! [`TransactionalJob`] — a [`Job`] whose `process` receives an open transaction —
//! and register [`Transactional::new(job, store)`](Transactional::new) with the
//! worker.
//!
//! # What it guarantees
//!
//! **Each item's effect happens exactly once, even across crashes** (`kill -9`, power
//! loss with `synchronous=FULL`, a dropped worker future). For every item (or batch)
//! the adapter:
//!
//! 1. begins a transaction on the store's pool and, as its first statement, writes
//!    the cursor just past the item, adds the item's count to `items_done` and
//!    resets the crash count, fenced by the run's token (`WHERE id = ? AND
//!    run_token = ? AND state = 'running'`). Being a write, that statement takes
//!    SQLite's write lock at once, as `BEGIN IMMEDIATE` would, so no other run can
//!    change the job until the transaction ends;
//! 2. runs [`TransactionalJob::process`] with the transaction;
//! 3. commits — or, if `process` failed, rolls the work and the cursor back together.
//!
//! So the stored cursor names exactly the items whose effects are committed: a run
//! that resumes after any interruption or crash starts at the first item whose
//! effect is not. A stale run (its lease expired and the job was rescued or taken
//! over, so its token no longer matches) cannot commit anything: the fenced write
//! changes no row, the transaction is rolled back before the item's work, and the
//! run ends as lease-lost (its release is rejected by the same fencing). An error (or panic) in `process` rolls the work back too; the
//! runtime retries from the cursor before the item, as for any job.
//!
//! Only writes made **through the transaction** are covered. Effects outside the
//! database (an HTTP call, a message, a file) remain at-least-once: make them
//! idempotent, or record them in the database and send them from there.
//!
//! # What it costs
//!
//! One write transaction — and one durable commit (an `fsync` with
//! `synchronous=FULL`) — per item. SQLite has one writer at a time, so while an item
//! runs no other connection of the file can write (other jobs' items, heartbeats,
//! claims wait up to the busy timeout, 5 s by default): keep `process` short, and
//! batch for throughput — [`EnumeratorExt::batched`](iterjob::enumerator::EnumeratorExt::batched)
//! on any enumerator, or [`Keyset::batches`](crate::Keyset::batches), with
//! [`TransactionalJob::count_items`] returning the batch's length. Inside `process`,
//! read and write through `tx` only: a statement on the store's pool would wait for
//! the write lock this transaction holds (until the busy timeout).
//!
//! The runtime keeps checkpointing as for any job (every second by default); those
//! checkpoints write the cursor and count the transactions already committed, plus
//! the running time and total.
//!
//! # Shutdown deadline
//!
//! A worker that reaches its shutdown deadline (`WorkerConfig::shutdown_timeout`,
//! 30 s by default) with a run still inside an item aborts the run (its transaction
//! rolls back) and releases the job without progress, so the cursor the items'
//! transactions committed stands and the next run repeats nothing.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use iterjob::enumerator::{Enumerator, EnumeratorExt};
//! use iterjob::{JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
//! use iterjob_sqlite::sqlx::{self, Row, Sqlite, Transaction};
//! use iterjob_sqlite::{Keyset, KeysetCursor, SqliteRow, SqliteStore, Transactional, TransactionalJob};
//!
//! /// Credits every account's monthly interest, exactly once per account.
//! struct CreditInterest {
//!     store: SqliteStore,
//! }
//!
//! impl TransactionalJob<Sqlite> for CreditInterest {
//!     const KIND: &'static str = "credit_interest";
//!     type Params = ();
//!     type Cursor = KeysetCursor;
//!     type Item = Vec<SqliteRow>;
//!
//!     fn enumerate(
//!         &self,
//!         _params: &(),
//!         cursor: Option<KeysetCursor>,
//!     ) -> Result<impl Enumerator<Vec<SqliteRow>, KeysetCursor>, JobError> {
//!         Ok(Keyset::table("accounts").key("id").batch_size(200).batches(self.store.pool(), cursor))
//!     }
//!
//!     fn count_items(&self, batch: &Vec<SqliteRow>) -> u64 {
//!         batch.len() as u64
//!     }
//!
//!     async fn process(
//!         &self,
//!         _ctx: &JobContext<()>,
//!         batch: Vec<SqliteRow>,
//!         tx: &mut Transaction<'_, Sqlite>,
//!     ) -> Result<(), JobError> {
//!         for row in &batch {
//!             let id: i64 = row.try_get("id")?;
//!             sqlx::query("UPDATE accounts SET balance = balance * 1.001 WHERE id = ?")
//!                 .bind(id)
//!                 .execute(&mut **tx) // through the transaction, not the pool
//!                 .await?;
//!         }
//!         Ok(()) // the adapter writes the cursor and commits
//!     }
//! }
//!
//! # async fn run() -> iterjob::Result<()> {
//! // the accounts live in bank.db, and so do the jobs
//! let store = SqliteStore::connect("sqlite://bank.db").await?;
//! let job = Transactional::new(CreditInterest { store: store.clone() }, store.clone());
//! store.job_insert(&NewJob::of(&job, &())?).await?;
//! let worker = Worker::new(Arc::new(store), Registry::new().with(job), WorkerConfig::default())?;
//! worker.run_until_idle().await?;
//! # Ok(())
//! # }
//! ```

use iterjob::store::{JobId, RunToken};
use iterjob_sql::TransactionalStore;
use sqlx::{Sqlite, Transaction};

use crate::error::map_sqlx;
use crate::store::SqliteStore;

pub use iterjob_sql::TransactionalJob;

const Q_CHECKPOINT_IN_TX: &str = include_str!("../queries/job_checkpoint_in_transaction.sql");
const Q_EXISTS: &str = include_str!("../queries/job_exists.sql");

/// The [`Job`](iterjob::Job) that runs a [`TransactionalJob<Sqlite>`]: each item's work
/// and the cursor past it commit in one transaction on the [`SqliteStore`]'s file,
/// which must be the file the worker's store uses. See the [module
/// docs](crate::transactional).
pub type Transactional<J> = iterjob_sql::Transactional<J, SqliteStore>;

impl TransactionalStore for SqliteStore {
    type Database = Sqlite;

    fn pool(&self) -> &sqlx::Pool<Sqlite> {
        SqliteStore::pool(self)
    }

    fn describe(&self) -> String {
        format!("SQLite store `{}`", self.path())
    }

    fn map_error(&self, what: &'static str, err: sqlx::Error) -> iterjob::Error {
        map_sqlx(self.path(), what, err)
    }

    fn classify(&self, err: &sqlx::Error) -> iterjob_sql::ErrorClass {
        <crate::dialect::SqliteDialect as iterjob_sql::Dialect>::classify(err)
    }

    async fn checkpoint_in_transaction<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Sqlite>,
        job: JobId,
        token: RunToken,
        cursor: &'t str,
        count: i64,
        lease_ms: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(Q_CHECKPOINT_IN_TX)
            .bind(job)
            .bind(token.0)
            .bind(iterjob::store::now_millis())
            .bind(cursor)
            .bind(count)
            .bind(lease_ms)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    async fn job_exists_in<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Sqlite>,
        job: JobId,
    ) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(Q_EXISTS)
            .bind(job)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }
}
