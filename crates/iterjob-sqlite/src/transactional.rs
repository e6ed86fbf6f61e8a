//! Transactional iteration: an item's work and the cursor advance past it commit in
//! one SQLite transaction.
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
//! impl TransactionalJob for CreditInterest {
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

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::Enumerator;
use iterjob::store::{InterruptReason, now_millis};
use iterjob::{Job, JobContext, JobError, KindSettings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Sqlite, Transaction};

use crate::error::map_sqlx;
use crate::store::SqliteStore;

const Q_CHECKPOINT_IN_TX: &str = include_str!("../queries/job_checkpoint_in_transaction.sql");

/// A job kind whose work for an item runs inside a database transaction that also
/// advances the job's cursor: register it wrapped in [`Transactional`].
///
/// Everything but [`process`](TransactionalJob::process) is as in [`Job`] (see there);
/// `process` gets the transaction in which the adapter then writes the cursor and
/// commits. See the [module docs](crate::transactional) for the guarantee and its cost.
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
    /// database that already holds its write lock and has advanced the cursor past
    /// the item. Return `Ok` to commit the work and the cursor together; an error (or
    /// a panic) rolls both back, and the runtime handles the error as for any job.
    /// Do not commit or roll back `tx` yourself.
    fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: Self::Item,
        tx: &mut Transaction<'_, Sqlite>,
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
/// it commit in one transaction on `store`, which must be the database the worker's
/// store uses (the same file). See the [module docs](crate::transactional).
///
/// Its kind, parameters and cursor are the inner job's, so jobs enqueued for either
/// are the same jobs. Its items carry the cursor just past them.
#[derive(Debug)]
pub struct Transactional<J> {
    job: J,
    store: SqliteStore,
}

impl<J: TransactionalJob> Transactional<J> {
    /// Wraps `job`, whose data lives in `store`'s database: the worker running it must
    /// use the same database as its store (a clone of `store`, or another
    /// [`SqliteStore`] on the same file).
    pub fn new(job: J, store: SqliteStore) -> Self {
        Transactional { job, store }
    }

    /// The inner job.
    pub fn job(&self) -> &J {
        &self.job
    }

    /// The store whose database the items' transactions run on.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The error for an in-transaction checkpoint that changed no row, read in the
    /// same transaction (which is then rolled back).
    async fn rejected(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        ctx: &JobContext<J::Params>,
    ) -> JobError {
        let db = self.store.path();
        let id = ctx.job_id;
        let exists = sqlx::query("SELECT 1 FROM iterjob_jobs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await;
        match exists {
            Ok(None) => JobError::fatal(format!(
                "job {id} is not in the SQLite store `{db}` its transactions run on; the data of \
                 job kind `{}` must live in the database the worker's store uses; the item's \
                 work was rolled back",
                J::KIND
            )),
            Ok(Some(_)) => JobError::retryable(format!(
                "lease lost: job {id} no longer runs under this run's token in `{db}` (its lease \
                 expired and it was taken over, or the worker's store is another database); the \
                 item's work and cursor were rolled back"
            )),
            Err(err) => JobError::retryable(map_sqlx(
                db,
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
        let db = self.store.path();
        let count = i64::try_from(self.job.count_items(&item)).unwrap_or(i64::MAX);
        let cursor = serde_json::to_value(&cursor)
            .and_then(|value| serde_json::to_string(&value))
            .map_err(|e| {
                JobError::fatal(format!(
                    "the cursor of job kind `{}` does not serialize to JSON: {e}",
                    J::KIND
                ))
            })?;
        // A plain `BEGIN` whose first statement writes takes SQLite's write lock at
        // once, as `BEGIN IMMEDIATE` would (so the work never has to upgrade a read
        // lock). sqlx's `begin_with("BEGIN IMMEDIATE")` is avoided on purpose: a
        // future dropped while it checks the custom statement's effect (a worker
        // aborting its runs at its shutdown deadline) returns the connection to the
        // pool still inside the transaction, holding the write lock for good.
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(|err| map_sqlx(db, "beginning an item's transaction", err))?;
        // The fenced cursor write first: a stale run stops before doing any work.
        let written = sqlx::query(Q_CHECKPOINT_IN_TX)
            .bind(ctx.job_id)
            .bind(ctx.run_token.0)
            .bind(now_millis())
            .bind(cursor)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(|err| map_sqlx(db, "writing the cursor in an item's transaction", err))?
            .rows_affected();
        if written == 0 {
            let error = self.rejected(&mut tx, ctx).await;
            let _ = tx.rollback().await;
            return Err(error);
        }
        // An error returns early and drops `tx`: the cursor write and the work roll
        // back together.
        self.job.process(ctx, item, &mut tx).await?;
        tx.commit()
            .await
            .map_err(|err| map_sqlx(db, "committing an item's transaction", err))?;
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
