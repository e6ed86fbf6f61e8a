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
//! impl TransactionalJob for CreditInterest {
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

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::Enumerator;
use iterjob::store::InterruptReason;
use iterjob::{Job, JobContext, JobError, KindSettings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Postgres, Transaction};

use crate::error::map_sqlx;
use crate::store::PgStore;

/// A job kind whose work for an item runs inside a database transaction that also
/// advances the job's cursor: register it wrapped in [`Transactional`].
///
/// Everything but [`process`](TransactionalJob::process) is as in [`Job`] (see there);
/// `process` gets the transaction in which the adapter has written the cursor and
/// then commits. See the [module docs](crate::transactional) for the guarantee and
/// its cost.
pub trait TransactionalJob: Send + Sync + Sized + 'static {
    /// The kind's stable name, stored with every job (as [`Job::KIND`]).
    const KIND: &'static str;

    /// Parameters, given at enqueue time and stored as JSON (as [`Job::Params`]).
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The position in the collection (as [`Job::Cursor`]); written in each item's
    /// transaction.
    type Cursor: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// One item of the collection, or one batch (as [`Job::Item`]).
    type Item: Send + 'static;

    /// Builds the enumerator from the parameters and the last committed cursor (as
    /// [`Job::enumerate`]).
    fn enumerate(
        &self,
        params: &Self::Params,
        cursor: Option<Self::Cursor>,
    ) -> Result<impl Enumerator<Self::Item, Self::Cursor>, JobError>;

    /// The work for one item, done through `tx`: a transaction on the store's
    /// database that already holds the job row's lock and has advanced the cursor
    /// past the item. Return `Ok` to commit the work and the cursor together; an
    /// error (or a panic) rolls both back, and the runtime handles the error as for
    /// any job. Do not commit or roll back `tx` yourself.
    fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: Self::Item,
        tx: &mut Transaction<'_, Postgres>,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// How many records one item stands for (as [`Job::count_items`]): return a
    /// batch's length. Added to `items_done` in the item's transaction.
    fn count_items(&self, item: &Self::Item) -> u64 {
        let _ = item;
        1
    }

    /// The number of items, for progress (as [`Job::total`]).
    fn total(
        &self,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Option<u64>, JobError>> + Send {
        let _ = params;
        async { Ok(None) }
    }

    /// The throttle condition (as [`Job::throttle`]).
    fn throttle(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Option<Duration>> + Send {
        let _ = ctx;
        async { None }
    }

    /// Runs once, before the first item of a fresh job (as [`Job::on_start`]).
    fn on_start(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs at the start of every run that resumes (as [`Job::on_resume`]).
    fn on_resume(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs after an interruption was checkpointed (as [`Job::on_interrupt`]).
    fn on_interrupt(
        &self,
        ctx: &JobContext<Self::Params>,
        reason: InterruptReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Runs once the collection is exhausted (as [`Job::on_complete`]).
    fn on_complete(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs after an error was checkpointed (as [`Job::on_error`]).
    fn on_error(
        &self,
        ctx: &JobContext<Self::Params>,
        error: &JobError,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, error);
        async {}
    }

    /// Per-kind settings (as [`Job::settings`]).
    fn settings(&self) -> KindSettings {
        KindSettings::default()
    }
}

/// The [`Job`] that runs a [`TransactionalJob`]: each item's work and the cursor past
/// it commit in one transaction on `store`, which must be the store the worker uses
/// (the same database and schema). See the [module docs](crate::transactional).
///
/// Its kind, parameters and cursor are the inner job's, so jobs enqueued for either
/// are the same jobs. Its items carry the cursor just past them.
#[derive(Debug)]
pub struct Transactional<J> {
    job: J,
    store: PgStore,
}

impl<J: TransactionalJob> Transactional<J> {
    /// Wraps `job`, whose data lives in `store`'s database: the worker running it must
    /// use the same store (a clone of `store`, or another [`PgStore`] on the same
    /// database and schema, as a worker on another machine has).
    pub fn new(job: J, store: PgStore) -> Self {
        Transactional { job, store }
    }

    /// The inner job.
    pub fn job(&self) -> &J {
        &self.job
    }

    /// The store whose database the items' transactions run on.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// Begins an item's transaction so that it cannot be left half-begun. sqlx 0.8
    /// counts a transaction as open only once the server acknowledged `BEGIN`: a
    /// future dropped in that round trip (a worker aborting its runs at its shutdown
    /// deadline, a dropped worker) would return the connection to the pool still
    /// inside the transaction, and whatever next ran on it (a heartbeat, another
    /// item) would be neither committed nor rolled back. A task of its own finishes
    /// the `BEGIN` whatever happens to this future; if nobody takes the transaction
    /// any more, dropping it there rolls it back properly.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, JobError> {
        let pool = self.store.pool().clone();
        let target = self.store.target();
        match tokio::spawn(async move { pool.begin().await }).await {
            Ok(Ok(tx)) => Ok(tx),
            Ok(Err(err)) => Err(JobError::retryable(map_sqlx(
                target,
                "beginning an item's transaction",
                err,
            ))),
            Err(join) => Err(JobError::retryable(format!(
                "PostgreSQL store {target}: beginning an item's transaction failed: {join}"
            ))),
        }
    }

    /// The error for an in-transaction checkpoint that changed no row, read in the
    /// same transaction (which is then rolled back).
    async fn rejected(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        ctx: &JobContext<J::Params>,
    ) -> JobError {
        let target = self.store.target();
        let id = ctx.job_id;
        let exists = sqlx::query(self.store.exists_sql())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await;
        match exists {
            Ok(None) => JobError::fatal(format!(
                "job {id} is not in the PostgreSQL store {target} its transactions run on; the \
                 data of job kind `{}` must live in the database the worker's store uses, and \
                 Transactional::new must be given that store (same database and schema); the \
                 item's work was rolled back",
                J::KIND
            )),
            Ok(Some(_)) => JobError::retryable(format!(
                "lease lost: job {id} no longer runs under this run's token in {target} (its \
                 lease expired and it was taken over, or the worker's store is another \
                 database); the item's work and cursor were rolled back"
            )),
            Err(err) => JobError::retryable(map_sqlx(
                target,
                "checking a job after its in-transaction checkpoint was rejected",
                err,
            )),
        }
    }
}

impl<J: TransactionalJob> Job for Transactional<J> {
    const KIND: &'static str = J::KIND;
    type Params = J::Params;
    type Cursor = J::Cursor;
    type Item = (J::Item, J::Cursor);

    fn enumerate(
        &self,
        params: &Self::Params,
        cursor: Option<Self::Cursor>,
    ) -> Result<impl Enumerator<Self::Item, Self::Cursor>, JobError> {
        let inner = self.job.enumerate(params, cursor)?;
        Ok(inner.map(|step| step.map(|(item, cursor)| ((item, cursor.clone()), cursor))))
    }

    async fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        (item, cursor): Self::Item,
    ) -> Result<(), JobError> {
        let target = self.store.target();
        let count = i64::try_from(self.job.count_items(&item)).unwrap_or(i64::MAX);
        let cursor = serde_json::to_value(&cursor)
            .and_then(|value| serde_json::to_string(&value))
            .map_err(|e| {
                JobError::fatal(format!(
                    "the cursor of job kind `{}` does not serialize to JSON: {e}",
                    J::KIND
                ))
            })?;
        // A plain `BEGIN`: PostgreSQL locks rows, so the fenced UPDATE below takes the
        // job row's lock as it runs, and no special `BEGIN` (SQLite's `IMMEDIATE`) is
        // needed. Unlike SQLite's, sqlx's PostgreSQL `begin()` is not safe to drop
        // midway either; see `begin`.
        let mut tx = self.begin().await?;
        // The fenced cursor write first: a stale run stops before doing any work.
        let written = sqlx::query(self.store.checkpoint_in_tx_sql())
            .bind(ctx.job_id)
            .bind(ctx.run_token.0)
            .bind(cursor)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(|err| map_sqlx(target, "writing the cursor in an item's transaction", err))?
            .rows_affected();
        if written == 0 {
            let error = self.rejected(&mut tx, ctx).await;
            let _ = tx.rollback().await;
            return Err(error);
        }
        // An error returns early and drops `tx`: the cursor write and the work roll
        // back together (sqlx queues the ROLLBACK, sent before the connection is
        // reused).
        self.job.process(ctx, item, &mut tx).await?;
        tx.commit()
            .await
            .map_err(|err| map_sqlx(target, "committing an item's transaction", err))?;
        Ok(())
    }

    fn count_items(&self, item: &Self::Item) -> u64 {
        self.job.count_items(&item.0)
    }

    fn total(
        &self,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Option<u64>, JobError>> + Send {
        self.job.total(params)
    }

    fn throttle(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Option<Duration>> + Send {
        self.job.throttle(ctx)
    }

    fn on_start(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        self.job.on_start(ctx)
    }

    fn on_resume(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        self.job.on_resume(ctx)
    }

    fn on_interrupt(
        &self,
        ctx: &JobContext<Self::Params>,
        reason: InterruptReason,
    ) -> impl Future<Output = ()> + Send {
        self.job.on_interrupt(ctx, reason)
    }

    fn on_complete(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        self.job.on_complete(ctx)
    }

    fn on_error(
        &self,
        ctx: &JobContext<Self::Params>,
        error: &JobError,
    ) -> impl Future<Output = ()> + Send {
        self.job.on_error(ctx, error)
    }

    fn settings(&self) -> KindSettings {
        self.job.settings()
    }
}
