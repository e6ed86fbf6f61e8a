//! Transactional iteration: an item's work and the cursor advance past it commit in
//! one PostgreSQL transaction.
//!
//! # When to use it
//!
//! When the job's own data lives **in the same PostgreSQL database as the job store**
//! (the [`PgStore`] the worker uses; any schema of that database), and the work of an
//! item is a write to that data (update a row, insert a derived row, move a balance).
//! Write the kind as a [`TransactionalJob`] — a [`Job`] whose `process` receives an
//! open transaction — and register
//! [`Transactional::new(job, store)`](Transactional::new) with the worker.
//!
//! # What it guarantees
//!
//! **Each item's effect happens exactly once, even across crashes** (`kill -9`, a
//! lost connection, a machine that vanishes, a dropped worker future). For every
//! item (or batch) the adapter:
//!
//! 1. begins a transaction on the store's pool and, as its first statement, writes
//!    the cursor just past the item, adds the item's count to `items_done` and
//!    resets the crash count, fenced by the run's token (`WHERE id = $1 AND
//!    run_token = $2 AND state = 'running'`). Being an `UPDATE`, that statement takes
//!    the job row's lock at once and keeps it until the transaction ends, so no other
//!    run can change the job meanwhile: a rescuer or another worker that wants the
//!    row waits, then sees the committed row;
//! 2. runs [`TransactionalJob::process`] with the transaction;
//! 3. commits — or, if `process` failed, rolls the work and the cursor back together.
//!
//! So the stored cursor names exactly the items whose effects are committed: a run
//! that resumes after any interruption or crash starts at the first item whose
//! effect is not. A stale run (its lease expired and the job was rescued or taken
//! over, so its token no longer matches) cannot commit anything: the fenced write
//! changes no row, the transaction is rolled back before the item's work, and the
//! run ends as lease-lost (its release is rejected by the same fencing). An error
//! (or panic) in `process` rolls the work back too; the runtime retries from the
//! cursor before the item, as for any job. A worker that dies mid-item leaves an
//! open transaction the server rolls back when the connection closes.
//!
//! Only writes made **through the transaction** are covered. Effects outside the
//! database (an HTTP call, a message, a file) remain at-least-once: make them
//! idempotent, or record them in the database and send them from there.
//!
//! The transaction runs at the server's default isolation (`READ COMMITTED` unless
//! configured otherwise), which is all the guarantee needs: the fencing is a row
//! lock, not a snapshot. If the job's own reads need `REPEATABLE READ` or
//! `SERIALIZABLE`, set `default_transaction_isolation` for the store's connections
//! (in the URL: `?options=-c%20default_transaction_isolation%3Dserializable`); a
//! `SET TRANSACTION` inside `process` comes too late, after the cursor write took
//! the snapshot. Serialization failures are then retryable errors like any other.
//!
//! # What it costs
//!
//! One transaction — two round trips more than the work itself (`BEGIN` with the
//! cursor write, `COMMIT`), and one durable commit (a WAL flush with
//! `synchronous_commit = on`) — per item: batch for throughput
//! ([`EnumeratorExt::batched`](iterjob::enumerator::EnumeratorExt::batched) on any
//! enumerator, or [`Keyset::batches`](crate::Keyset::batches), with
//! [`TransactionalJob::count_items`] returning the batch's length). Unlike SQLite,
//! PostgreSQL locks rows, not the database: other jobs, their items, heartbeats and
//! claims go on in parallel. What waits for an item's commit is whatever wants **its
//! job's row**: the runtime's heartbeat of that job (so keep each item's transaction
//! well under the lease: a rescuer that finds the lease expired when the item
//! commits requeues the job, and the run's next item is then rejected as stale),
//! a pause or cancel of it, and the rows the work itself locks. Inside `process`,
//! read and write through `tx` only: a statement on the store's pool runs outside
//! the transaction, and waits for it if it touches a row the transaction wrote.
//!
//! Each running job holds one pooled connection for its item's transaction, and
//! another waits on it while a heartbeat of the job is due; a
//! [`Keyset`](crate::Keyset) walk holds one more between pages (see
//! [`Keyset::hold_connection`](crate::Keyset::hold_connection)). Size
//! [`PgOptions::max_connections`](crate::PgOptions::max_connections) at least three
//! per concurrently running transactional job, plus two.
//!
//! The runtime keeps checkpointing between items as for any job (every second by
//! default); those checkpoints write the cursor and count the transactions already
//! committed, plus the running time, total and lease.
//!
//! A worker that reaches its shutdown deadline (`WorkerConfig::shutdown_timeout`, 30 s
//! by default) with a run still inside an item aborts the run, whose transaction is
//! rolled back, and releases the job without progress: the cursor the last committed
//! item wrote stands, and the next run repeats nothing.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use iterjob::enumerator::Enumerator;
//! use iterjob::{JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
//! use iterjob_postgres::sqlx::{self, Postgres, Row, Transaction};
//! use iterjob_postgres::{Keyset, KeysetCursor, PgRow, PgStore, Transactional, TransactionalJob};
//!
//! /// Credits every account's monthly interest, exactly once per account.
//! struct CreditInterest {
//!     store: PgStore,
//! }
//!
//! impl TransactionalJob<Postgres> for CreditInterest {
//!     const KIND: &'static str = "credit_interest";
//!     type Params = ();
//!     type Cursor = KeysetCursor;
//!     type Item = Vec<PgRow>;
//!
//!     fn enumerate(
//!         &self,
//!         _params: &(),
//!         cursor: Option<KeysetCursor>,
//!     ) -> Result<impl Enumerator<Vec<PgRow>, KeysetCursor>, JobError> {
//!         Ok(Keyset::table("bank.accounts").key("id").batch_size(200).batches(self.store.pool(), cursor))
//!     }
//!
//!     fn count_items(&self, batch: &Vec<PgRow>) -> u64 {
//!         batch.len() as u64
//!     }
//!
//!     async fn process(
//!         &self,
//!         _ctx: &JobContext<()>,
//!         batch: Vec<PgRow>,
//!         tx: &mut Transaction<'_, Postgres>,
//!     ) -> Result<(), JobError> {
//!         let ids: Vec<i64> = batch.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?;
//!         sqlx::query("UPDATE bank.accounts SET balance = balance * 1.001 WHERE id = ANY($1)")
//!             .bind(&ids)
//!             .execute(&mut **tx) // through the transaction, not the pool
//!             .await?;
//!         Ok(()) // the adapter has written the cursor; it commits now
//!     }
//! }
//!
//! # async fn run() -> iterjob::Result<()> {
//! // the accounts live in database `bank`, and so do the jobs (schema `iterjob`)
//! let store = PgStore::connect("postgres://app@db.internal/bank").await?;
//! let job = Transactional::new(CreditInterest { store: store.clone() }, store.clone());
//! store.job_insert(&NewJob::of(&job, &())?).await?;
//! let worker = Worker::new(Arc::new(store), Registry::new().with(job), WorkerConfig::default())?;
//! worker.run_until_idle().await?;
//! # Ok(())
//! # }
//! ```

use iterjob::store::{JobId, RunToken};
use iterjob_sql::TransactionalStore;
use sqlx::{Postgres, Transaction};

use crate::error::map_sqlx;
use crate::store::PgStore;

pub use iterjob_sql::TransactionalJob;

/// The [`Job`](iterjob::Job) that runs a [`TransactionalJob<Postgres>`]: each item's
/// work and the cursor past it commit in one transaction on the [`PgStore`]'s
/// database, which must be the database (and schema) the worker's store uses. See
/// the [module docs](crate::transactional).
pub type Transactional<J> = iterjob_sql::Transactional<J, PgStore>;

impl TransactionalStore for PgStore {
    type Database = Postgres;

    fn pool(&self) -> &sqlx::Pool<Postgres> {
        PgStore::pool(self)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL store {}", self.target())
    }

    fn map_error(&self, what: &'static str, err: sqlx::Error) -> iterjob::Error {
        map_sqlx(self.target(), what, err)
    }

    fn classify(&self, err: &sqlx::Error) -> iterjob_sql::ErrorClass {
        <crate::dialect::PgDialect as iterjob_sql::Dialect>::classify(err)
    }

    async fn checkpoint_in_transaction<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Postgres>,
        job: JobId,
        token: RunToken,
        cursor: &'t str,
        count: i64,
        lease_ms: i64,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(self.checkpoint_in_tx_sql())
            .bind(job)
            .bind(token.0)
            .bind(cursor)
            .bind(count)
            .bind(lease_ms)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    async fn job_exists_in<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Postgres>,
        job: JobId,
    ) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(self.exists_sql())
            .bind(job)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }
}
