//! Transactional iteration: an item's work and the cursor advance past it commit in
//! one database transaction — written once for every SQL store.
//!
//! # When to use it
//!
//! When the job's own data lives **in the same database as the job store** (the
//! store the worker uses), and the work of an item is a write to that data (update a
//! row, insert a derived row, move a balance). Write the kind as a
//! [`TransactionalJob`] — a job whose `process` receives an open transaction — and
//! register [`Transactional::new(job, store)`](Transactional::new) with the worker.
//! Each store crate names the adapter for its store (`iterjob_sqlite::Transactional`,
//! `iterjob_postgres::Transactional`, `iterjob_mysql::Transactional`).
//!
//! # What it guarantees
//!
//! **Each item's effect happens exactly once, even across crashes** (`kill -9`, power
//! loss, a dropped worker future). For every item (or batch) the adapter:
//!
//! 1. begins a transaction on the store's pool and, as its first statement, writes
//!    the cursor just past the item, adds the item's count to `items_done` and
//!    resets the crash count, fenced by the run's token (`WHERE id = ? AND
//!    run_token = ? AND state = 'running'`). Being a write, that statement locks the
//!    job's row (the whole database on SQLite) at once, so no other run can change
//!    the job until the transaction ends;
//! 2. runs [`TransactionalJob::process`] with the transaction;
//! 3. commits — or, if `process` failed, rolls the work and the cursor back together.
//!
//! So the stored cursor names exactly the items whose effects are committed: a run
//! that resumes after any interruption or crash starts at the first item whose
//! effect is not. A stale run (its lease expired and the job was rescued or taken
//! over, so its token no longer matches) cannot commit anything: the fenced write
//! changes no row, the transaction is rolled back before the item's work, and the
//! run ends as lease-lost. An error (or panic) in `process` rolls the work back
//! too; the runtime retries from the cursor before the item, as for any job.
//!
//! Only writes made **through the transaction** are covered. Effects outside the
//! database (an HTTP call, a message, a file) remain at-least-once: make them
//! idempotent, or record them in the database and send them from there.
//!
//! # What it costs
//!
//! One write transaction — one durable commit — per item: batch for throughput
//! ([`EnumeratorExt::batched`](iterjob::enumerator::EnumeratorExt::batched) on any
//! enumerator, or a keyset's `batches`, with [`TransactionalJob::count_items`]
//! returning the batch's length). Inside `process`, read and write through `tx`
//! only: a statement on the store's pool may wait for the lock this transaction
//! holds. On SQLite, one writer at a time: keep `process` short.
//!
//! The runtime keeps checkpointing as for any job (every second by default); those
//! checkpoints write the cursor and count the transactions already committed, plus
//! the running time and total.
//!
//! # Partitions
//!
//! The adapter forwards every [`Job`] method to the inner job — [`Job::partition`]
//! and [`Job::split`] included — so a transactional job can be enqueued with
//! partitions and split dynamically like any other.
//!
//! # Shutdown deadline
//!
//! A worker that reaches its shutdown deadline with a run still inside an item
//! aborts the run (its transaction rolls back) and releases the job without
//! progress, so the cursor the items' transactions committed stands and the next
//! run repeats nothing.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::Enumerator;
use iterjob::store::{InterruptReason, JobId, RunToken};
use iterjob::{Job, JobContext, JobError, KindSettings, SplitParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Database, Pool, Transaction};

/// How long a job waits before trying again after its database was unavailable
/// ([`JobError::Unavailable`]): long enough not to hammer a full or restarting
/// database, short enough to resume soon after it recovers.
pub const UNAVAILABLE_BACKOFF: Duration = Duration::from_secs(1);

/// A job kind whose work for an item runs inside a transaction on database `DB`
/// that also advances the job's cursor: register it wrapped in [`Transactional`].
///
/// Everything but [`process`](TransactionalJob::process) is as in [`Job`] (see
/// there); `process` gets the transaction in which the adapter has written the
/// cursor, and commits after it. See the [module docs](crate::transactional) for the
/// guarantee and its cost.
pub trait TransactionalJob<DB: Database>: Send + Sync + Sized + 'static {
    /// The kind's stable name, stored with every job (as [`Job::KIND`]).
    const KIND: &'static str;
    /// True when the kind implements
    /// [`partition`](TransactionalJob::partition) (as [`Job::PARTITIONABLE`]).
    const PARTITIONABLE: bool = false;

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
    /// database that has already advanced the cursor past the item (and so holds the
    /// job's lock). Return `Ok` to commit the work and the cursor together; an error
    /// (or a panic) rolls both back, and the runtime handles the error as for any
    /// job. Do not commit or roll back `tx` yourself.
    fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: Self::Item,
        tx: &mut Transaction<'_, DB>,
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

    /// Splits the collection into about `n` partitions (as [`Job::partition`]). The
    /// default refuses: the kind cannot be partitioned.
    fn partition(
        &self,
        params: &Self::Params,
        n: u32,
    ) -> impl Future<Output = Result<Vec<Self::Params>, JobError>> + Send {
        let _ = (params, n);
        async {
            Err(JobError::fatal(format!(
                "job kind `{}` cannot be split into partitions: implement \
                 `TransactionalJob::partition` (and `TransactionalJob::split`) for it, or \
                 enqueue the job without partitions",
                Self::KIND
            )))
        }
    }

    /// Divides what is left of a running partition (as [`Job::split`]). The default
    /// never splits.
    fn split(
        &self,
        params: &Self::Params,
        cursor: Option<&Self::Cursor>,
    ) -> impl Future<Output = Result<SplitParams<Self::Params>, JobError>> + Send {
        let _ = (params, cursor);
        async { Ok(None) }
    }

    /// Per-kind settings (as [`Job::settings`]).
    fn settings(&self) -> KindSettings {
        KindSettings::default()
    }
}

/// A store whose database [`Transactional`] runs items' transactions on: the one
/// statement that writes the cursor inside the transaction, and how the store names
/// itself and its errors. Implemented by each SQL store.
///
/// Not a stable API for outsiders.
pub trait TransactionalStore: Clone + Send + Sync + 'static {
    /// The store's database.
    type Database: Database;

    /// The store's pool: items' transactions begin on it.
    fn pool(&self) -> &Pool<Self::Database>;

    /// How messages name the store's database: ``SQLite store `shop.db` ``.
    fn describe(&self) -> String;

    /// An error met doing `what` (`"committing an item's transaction"`), as the
    /// store reports errors.
    fn map_error(&self, what: &'static str, err: sqlx::Error) -> iterjob::Error;

    /// What kind of error `err` is, as the store's [`Dialect`](crate::Dialect)
    /// classifies it: transient ones (the database full, locked, restarting, the
    /// connection lost) end an item as [`JobError::Unavailable`], using up no attempt.
    fn classify(&self, err: &sqlx::Error) -> crate::ErrorClass;

    /// Writes the cursor advance of one item as the first statement of `tx`: the
    /// cursor (JSON text), `items_done + count`, the crash count reset when `count`
    /// is positive, the checkpoint time, and the lease renewed to at least now +
    /// `lease_ms` (the item's own transaction is the run's heartbeat too, so a job
    /// whose items hold the write lock never loses its lease to them) — fenced by
    /// `token` (`id = job AND run_token = token AND state = 'running'`). Returns the
    /// number of rows written: 0 when the fence rejected it.
    fn checkpoint_in_transaction<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Self::Database>,
        job: JobId,
        token: RunToken,
        cursor: &'t str,
        count: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 't;

    /// Whether job `job` exists, read through `tx`.
    fn job_exists_in<'t>(
        &'t self,
        tx: &'t mut Transaction<'static, Self::Database>,
        job: JobId,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 't;
}

/// The [`Job`] that runs a [`TransactionalJob`]: each item's work and the cursor past
/// it commit in one transaction on `store`, which must be the database the worker's
/// store uses. See the [module docs](crate::transactional).
///
/// Its kind, parameters and cursor are the inner job's, so jobs enqueued for either
/// are the same jobs. Its items carry the cursor just past them.
#[derive(Debug)]
pub struct Transactional<J, S> {
    job: J,
    store: S,
}

impl<J, S: TransactionalStore> Transactional<J, S> {
    /// Wraps `job`, whose data lives in `store`'s database: the worker running it must
    /// use the same database as its store (a clone of `store`, or another store on
    /// the same database).
    pub fn new(job: J, store: S) -> Self {
        Transactional { job, store }
    }

    /// The inner job.
    pub fn job(&self) -> &J {
        &self.job
    }

    /// The store whose database the items' transactions run on.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<J, S> Transactional<J, S>
where
    S: TransactionalStore,
    J: TransactionalJob<S::Database>,
{
    /// Begins an item's transaction so that it cannot be left half-begun. sqlx counts
    /// a transaction as open only once the server acknowledged `BEGIN`: a future
    /// dropped in that round trip (a worker aborting its runs at its shutdown
    /// deadline, a dropped worker) would return the connection to the pool still
    /// inside the transaction, and whatever next ran on it would be neither
    /// committed nor rolled back. A task of its own finishes the `BEGIN` whatever
    /// happens to this future; if nobody takes the transaction any more, dropping it
    /// there rolls it back properly.
    async fn begin(&self) -> Result<Transaction<'static, S::Database>, JobError> {
        let pool = self.store.pool().clone();
        match tokio::spawn(async move { pool.begin().await }).await {
            Ok(Ok(tx)) => Ok(tx),
            Ok(Err(err)) => Err(self.store_error("beginning an item's transaction", err)),
            Err(join) => Err(JobError::retryable(format!(
                "{}: beginning an item's transaction failed: {join}",
                self.store.describe()
            ))),
        }
    }

    /// The error of the adapter's own statements (begin, cursor write, commit): a
    /// fault of the database rather than of the job — no free connection, the disk
    /// full, the database locked or restarting, the connection lost — is
    /// [`JobError::Unavailable`] (back to the queue, no attempt used); anything else
    /// (a constraint a deferred check rejects at commit, say) is retryable.
    fn store_error(&self, what: &'static str, err: sqlx::Error) -> JobError {
        let pool_starved = matches!(err, sqlx::Error::PoolTimedOut);
        let outside = self.outside(&err);
        let error = self.store.map_error(what, err);
        if !outside {
            return JobError::retryable(error);
        }
        if pool_starved {
            let pool = self.store.pool().options().get_max_connections();
            return JobError::unavailable(
                UNAVAILABLE_BACKOFF,
                format!(
                    "{error}: every connection of the pool of {} ({pool} connections) was busy; \
                     each running job of kind `{}` holds one for its item's transaction (and a \
                     keyset walk another between pages), so give the pool more connections than \
                     the worker runs jobs at once, or lower the worker's --concurrency",
                    self.store.describe(),
                    J::KIND
                ),
            );
        }
        JobError::unavailable(UNAVAILABLE_BACKOFF, error)
    }

    /// Is `err` a fault of the database rather than of the job: no free connection,
    /// or a transient class (full, locked, restarting, connection lost)? A
    /// constraint is the data's doing, whatever its class says.
    fn outside(&self, err: &sqlx::Error) -> bool {
        match err {
            sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(db) => {
                matches!(db.kind(), sqlx::error::ErrorKind::Other)
                    && self.store.classify(err).is_transient()
            }
            _ => self.store.classify(err).is_transient(),
        }
    }

    /// An error from the job's own work in the item's transaction: a database error
    /// passed up with `?` that is the database's fault (the connection cut by a
    /// restart or an administrator, the disk full, the lock held elsewhere) is
    /// [`JobError::Unavailable`] like the adapter's own statements'; anything else
    /// is the job's, as it returned it.
    fn work_error(&self, error: JobError) -> JobError {
        let JobError::Retryable(inner) = error else {
            return error;
        };
        match inner.downcast::<sqlx::Error>() {
            Ok(err) if self.outside(&err) => {
                self.store_error("the item's work in its transaction", *err)
            }
            Ok(err) => JobError::Retryable(err),
            Err(inner) => JobError::Retryable(inner),
        }
    }

    /// The error for an in-transaction checkpoint that changed no row, read in the
    /// same transaction (which is then rolled back).
    async fn rejected(
        &self,
        tx: &mut Transaction<'static, S::Database>,
        ctx: &JobContext<J::Params>,
    ) -> JobError {
        let db = self.store.describe();
        let id = ctx.job_id;
        match self.store.job_exists_in(tx, id).await {
            Ok(false) => JobError::fatal(format!(
                "job {id} is not in the {db} its transactions run on; the data of job kind `{}` \
                 must live in the database the worker's store uses, and `Transactional::new` \
                 must be given that store (same database, and schema where there is one); the \
                 item's work was rolled back",
                J::KIND
            )),
            Ok(true) => JobError::retryable(format!(
                "lease lost: job {id} no longer runs under this run's token in the {db} (its \
                 lease expired and it was taken over, or the worker's store is another \
                 database); the item's work and cursor were rolled back"
            )),
            Err(err) => JobError::retryable(self.store.map_error(
                "checking a job after its in-transaction checkpoint was rejected",
                err,
            )),
        }
    }
}

impl<J, S> Job for Transactional<J, S>
where
    S: TransactionalStore,
    J: TransactionalJob<S::Database>,
{
    const KIND: &'static str = J::KIND;
    const PARTITIONABLE: bool = J::PARTITIONABLE;
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
        let count = i64::try_from(self.job.count_items(&item)).unwrap_or(i64::MAX);
        let cursor = serde_json::to_string(&cursor).map_err(|e| {
            JobError::fatal(format!(
                "the cursor of job kind `{}` does not serialize to JSON: {e}",
                J::KIND
            ))
        })?;
        // A plain `BEGIN` whose first statement writes takes the job's lock at once
        // (SQLite's write lock, a row lock elsewhere), so the work never has to
        // upgrade a read lock.
        let mut tx = self.begin().await?;
        let sent = ctx.lease_renewal.stamp();
        // The fenced cursor write first: a stale run stops before doing any work.
        let written = self
            .store
            .checkpoint_in_transaction(
                &mut tx,
                ctx.job_id,
                ctx.run_token,
                &cursor,
                count,
                i64::try_from(ctx.lease.as_millis()).unwrap_or(i64::MAX),
            )
            .await
            .map_err(|err| self.store_error("writing the cursor in an item's transaction", err))?;
        if written == 0 {
            let error = self.rejected(&mut tx, ctx).await;
            let _ = tx.rollback().await;
            return Err(error);
        }
        // An error returns early and drops `tx`: the cursor write and the work roll
        // back together.
        if let Err(error) = self.job.process(ctx, item, &mut tx).await {
            return Err(self.work_error(error));
        }
        tx.commit()
            .await
            .map_err(|err| self.store_error("committing an item's transaction", err))?;
        // the cursor write renewed the lease too (now + `ctx.lease` when it was sent)
        ctx.lease_renewal.renewed(sent);
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

    fn partition(
        &self,
        params: &Self::Params,
        n: u32,
    ) -> impl Future<Output = Result<Vec<Self::Params>, JobError>> + Send {
        self.job.partition(params, n)
    }

    fn split(
        &self,
        params: &Self::Params,
        cursor: Option<&Self::Cursor>,
    ) -> impl Future<Output = Result<SplitParams<Self::Params>, JobError>> + Send {
        self.job.split(params, cursor)
    }

    fn settings(&self) -> KindSettings {
        self.job.settings()
    }
}
