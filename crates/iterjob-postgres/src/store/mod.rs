//! [`PgStore`]: the [`Store`] on a PostgreSQL database, for any number of workers on
//! any number of machines.
//!
//! Every method is one SQL statement, or one short transaction when it must read
//! before it writes (enqueueing with unique keys, the admin actions, which lock the
//! job's row with `FOR UPDATE`). No transaction and no session lock is held while a
//! job runs: a run owns its job through its lease and run token alone, so a worker
//! that vanishes holds nothing but a lease that expires. The SQL lives in
//! `queries/`, one file per method, with the schema substituted when the store is
//! built.
//!
//! Choices the [`Store`] trait leaves open are made as in the SQLite store and
//! [`MemoryStore`](iterjob::store::MemoryStore): a fenced write for a job that does
//! not exist fails with [`Error::JobNotFound`], for a job under another token (or no
//! longer running) with [`Error::LeaseLost`]; a release clears pending pause and
//! cancel requests when the job ends paused or finished, and keeps them on an
//! interruption or a retry.
//!
//! Timestamps come from the database server's clock (`clock_timestamp()`), never the
//! worker's, except the `run_at` values the runtime computes for retries and
//! interruptions, which the trait passes in.
//!
//! Rate-limit buckets ([`Store::rate_acquire`]) are rows of `rate_limits` in the
//! store's schema, each reservation one upsert on the server's clock, so every worker
//! on every machine using the schema shares them.
//!
//! The store is laid out one idea per file: `options` (how to open it), `queries`
//! (the SQL of each method, for one schema), `hot` (connections kept for the
//! worker's hot path), `listener` (`LISTEN`/`NOTIFY` wake-ups), `insert`
//! (enqueueing), `methods` (the [`Store`] trait), `release_many` (batched releases).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use iterjob::store::rules::{AdminAction, AdminStep, admin_step};
use iterjob::store::{JobEventKind, JobId, JobRecord, JobState, Store, parent_outcome};
use iterjob::{Error, Result};
use iterjob_sql::record;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tokio::sync::Notify;

use crate::dialect::PgDialect;
use crate::error::{Target, map_sqlx};
use crate::events;
use crate::migrate::{DEFAULT_SCHEMA, validate_schema};

mod hot;
mod insert;
mod listener;
mod methods;
mod options;
mod queries;
mod release_many;

use hot::{BackgroundTask, MAX_HOT};
use options::target_of;
pub use options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, PgOptions,
};
use queries::Queries;

/// Enqueueing at least this many jobs since the last `ANALYZE` (in one call or in
/// many) refreshes the table's planner statistics; on a table of more than ten times
/// as many rows, a tenth of its rows.
pub(super) const ANALYZE_AFTER_INSERTING: u64 = 1000;

/// How many jobs `job_list` returns when the filter sets no limit.
pub(super) const DEFAULT_LIST_LIMIT: usize = 100;

/// Jobs per `INSERT` statement when enqueueing a large batch.
pub(super) const INSERT_CHUNK: usize = 5_000;

/// At most this many jobs per claim, whatever the request says.
pub(super) const MAX_CLAIM: usize = 10_000;

/// Claims of up to this many jobs get a statement of their own, with that many as
/// its literal `LIMIT` (see `queries/job_claim.sql`); bigger ones share one per
/// [`CLAIM_LIMIT_STEP`] up to [`STEPPED_CLAIM_LIMITS`], then one per power of two,
/// so a connection prepares at most about fifty claim statements. The rows between
/// the claim and its statement's `LIMIT` are locked for the statement and left
/// queued: the steps keep that waste small for the claims a worker of short jobs
/// sends (dozens to a hundred or so jobs; by powers of two, a claim of 72 locked 128
/// rows).
pub(super) const EXACT_CLAIM_LIMITS: usize = 32;

/// The step of claim statements' `LIMIT`s above [`EXACT_CLAIM_LIMITS`].
pub(super) const CLAIM_LIMIT_STEP: usize = 16;

/// Past this, claim statements' `LIMIT`s go by powers of two.
pub(super) const STEPPED_CLAIM_LIMITS: usize = 256;

/// The literal `LIMIT` of the claim statement for a claim of `n` jobs.
pub(super) fn claim_limit(n: usize) -> usize {
    if n <= EXACT_CLAIM_LIMITS {
        n
    } else if n <= STEPPED_CLAIM_LIMITS {
        n.div_ceil(CLAIM_LIMIT_STEP) * CLAIM_LIMIT_STEP
    } else {
        n.next_power_of_two()
    }
}

/// What clones of a store share.
struct Inner {
    target: Target,
    queries: Queries,
    /// The NOTIFY channel, when notifications are on.
    channel: Option<String>,
    /// Woken when jobs may have become claimable: by this store's own writes, and by
    /// the `LISTEN` task for other processes' writes.
    available: Arc<Notify>,
    /// Options for the `LISTEN` connection (the pool's, when built from a URL).
    listen_options: PgConnectOptions,
    /// The `LISTEN` task, started by the first `job_wait_available`.
    listener: Mutex<Option<BackgroundTask>>,
    /// Connections kept out of the pool for the worker's hot path (see
    /// [`PgStore::hot`]).
    hot: Mutex<Vec<PoolConnection<Postgres>>>,
    /// How many connections `hot` keeps at most.
    max_hot: usize,
    /// Gives the kept connections back when the pool is closed (by
    /// [`PgStore::close`] or by whoever owns the pool): started with the first kept
    /// connection, stopped with the store.
    hot_watch: Mutex<Option<BackgroundTask>>,
    /// Jobs this store enqueued since it last ran `ANALYZE`.
    inserted_since_analyze: AtomicU64,
    /// How many make it run `ANALYZE` again: [`ANALYZE_AFTER_INSERTING`], or a tenth
    /// of the table's rows as the last `ANALYZE` counted them.
    analyze_threshold: AtomicU64,
}

/// The scale-out [`Store`]: jobs in a PostgreSQL database that any number of worker
/// processes on any number of machines share.
///
/// Cloning is cheap: clones share the connection pool and the `LISTEN` connection.
///
/// ```no_run
/// use iterjob::store::{NewJob, Store};
/// use iterjob_postgres::PgStore;
///
/// # async fn demo() -> iterjob::Result<()> {
/// // schema `iterjob` created and migrated if needed
/// let store = PgStore::connect("postgres://app@db.internal/app").await?;
/// let ids = store
///     .job_insert_many(&[NewJob::new("reindex", serde_json::json!({"shard": 3}))])
///     .await?;
/// println!("enqueued job {}", ids[0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    inner: Arc<Inner>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.inner.target.server)
            .field("schema", &self.inner.target.schema)
            .field("notify", &self.inner.channel.is_some())
            .finish_non_exhaustive()
    }
}

/// The NOTIFY channel of the store in `schema`.
pub fn notify_channel(schema: &str) -> String {
    format!("iterjob:{schema}")
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`, with an
    /// optional `?schema=NAME`), creates the schema (default `iterjob`) if missing, and
    /// migrates it. See [`PgOptions`] for the defaults.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL does not parse, names a database that does not
    /// exist, or an invalid schema; [`Error::Backend`] when the server cannot be
    /// reached (the message names host and port and what to check) or refuses the
    /// user, or the user lacks a permission on the schema (the message says which
    /// `GRANT` helps); [`Error::Corrupt`] when the schema was written by a newer
    /// iterjob.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PgOptions::new(url)).await
    }

    /// Connects with these options and migrates the schema.
    ///
    /// # Errors
    /// As [`PgStore::connect`].
    pub async fn connect_with(options: PgOptions) -> Result<Self> {
        let (connect, schema, notify) = options.resolve()?;
        let target = target_of(&connect, &schema);
        if options.max_connections == 0 {
            return Err(Error::Config(format!(
                "PostgreSQL store {target}: max_connections must be at least 1"
            )));
        }
        // One direct connection first: the pool would retry a refused connection until
        // its acquire timeout, and a wrong URL deserves an answer at once.
        let probe = tokio::time::timeout(
            options.connect_timeout,
            PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            Error::Backend(
                format!(
                    "PostgreSQL store {target}: connecting timed out after {:?}; check that the \
                     server at {} is reachable from here (`pg_isready -h {} -p {}`) and not \
                     overloaded",
                    options.connect_timeout, target.address, target.host, target.port
                )
                .into(),
            )
        })?
        .map_err(|err| map_sqlx(&target, "connecting", err))?;
        let _ = probe.close().await;

        let pool = iterjob_sql::pool::hygienic(PgPoolOptions::new())
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let store = PgStore::build(pool, connect, target, notify);
        if options.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// Checks, changing nothing, that the schema is the one this build writes.
    ///
    /// # Errors
    /// [`Error::Config`] when the schema has no iterjob tables or an older version
    /// (the message says to run `migrate`); [`Error::Corrupt`] when a newer iterjob
    /// wrote it; [`Error::Backend`] when the server cannot be read.
    pub async fn check_schema(&self) -> Result<()> {
        let target = &self.inner.target;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(crate::migrate::render(
                "{schema}.schema_migrations",
                &target.schema,
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_sqlx(target, "looking up the schema", e))?;
        let newest: Option<i64> = if exists {
            sqlx::query_scalar(&format!(
                "SELECT MAX(version) FROM {}",
                crate::migrate::render("{schema}.schema_migrations", &target.schema)
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_sqlx(target, "reading the schema version", e))?
        } else {
            None
        };
        iterjob_sql::schema::check_version(
            &format!("PostgreSQL store {target}"),
            newest,
            crate::SCHEMA_VERSION,
            concat!("iterjob-postgres ", env!("CARGO_PKG_VERSION")),
        )
    }

    /// A store in the default schema (`iterjob`, notifications on) on an existing
    /// pool, for an application that already has one. Does not touch the database:
    /// call [`Store::migrate`] before using the store.
    pub fn from_pool(pool: PgPool) -> Self {
        let connect = pool.connect_options().as_ref().clone();
        let target = target_of(&connect, DEFAULT_SCHEMA);
        PgStore::build(pool, connect, target, true)
    }

    /// A store in `schema` on an existing pool, with notifications on or off. Does
    /// not touch the database: call [`Store::migrate`] before using the store.
    ///
    /// # Errors
    /// [`Error::Config`] when `schema` is not a plain identifier.
    pub fn from_pool_with(pool: PgPool, schema: &str, notify: bool) -> Result<Self> {
        validate_schema(schema)?;
        let connect = pool.connect_options().as_ref().clone();
        let target = target_of(&connect, schema);
        Ok(PgStore::build(pool, connect, target, notify))
    }

    /// A store whose pool connects on first use, without touching the server now:
    /// no connection check, no migration (the schema must exist). For a job that
    /// opens the store its parameters name from synchronous code; use
    /// [`PgStore::connect_with`] to open a store that is checked and migrated.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL or the schema is invalid.
    pub fn lazy(options: PgOptions) -> Result<Self> {
        let (connect, schema, notify) = options.resolve()?;
        let target = target_of(&connect, &schema);
        let pool = iterjob_sql::pool::hygienic(PgPoolOptions::new())
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        Ok(PgStore::build(pool, connect, target, notify))
    }

    fn build(pool: PgPool, connect: PgConnectOptions, target: Target, notify: bool) -> Self {
        let queries = Queries::new(&target.schema);
        let channel = notify.then(|| notify_channel(&target.schema));
        // at most half the pool, so the pool always has connections for the rest
        let max_hot = (pool.options().get_max_connections() / 2).min(MAX_HOT) as usize;
        PgStore {
            pool,
            inner: Arc::new(Inner {
                target,
                queries,
                channel,
                available: Arc::new(Notify::new()),
                listen_options: connect,
                listener: Mutex::new(None),
                hot: Mutex::new(Vec::new()),
                max_hot,
                hot_watch: Mutex::new(None),
                inserted_since_analyze: AtomicU64::new(0),
                analyze_threshold: AtomicU64::new(ANALYZE_AFTER_INSERTING),
            }),
        }
    }

    /// Counts `n` enqueued jobs, and refreshes the jobs table's planner statistics
    /// once enough were enqueued since the last refresh: [`ANALYZE_AFTER_INSERTING`],
    /// or a tenth of the table's rows. Without statistics the planner takes the table
    /// for empty: claims sorted every waiting job (measured: claims on 20,000 fresh
    /// one-item jobs 3.3x faster with statistics), and the pruner read and sorted
    /// the whole table for each batch of 500 (measured in the soak: 248 ms a batch on
    /// a never-analyzed table of 220,000 rows, and the worker fell from 5,000 to 1,400
    /// jobs/s until autovacuum's first analyze). Small enqueues count too, so an
    /// application enqueueing as its events arrive gets statistics as soon as one
    /// enqueueing in bulk does; the tenth keeps `ANALYZE` rare on a big table.
    async fn analyze_after_inserting(&self, n: u64) {
        let inner = &self.inner;
        let since = inner.inserted_since_analyze.fetch_add(n, Ordering::AcqRel) + n;
        if since < inner.analyze_threshold.load(Ordering::Acquire) {
            return;
        }
        // whoever takes the count runs the ANALYZE; a concurrent enqueue that also
        // crossed the threshold finds it taken
        let taken = inner.inserted_since_analyze.swap(0, Ordering::AcqRel);
        if taken < inner.analyze_threshold.load(Ordering::Acquire) {
            inner
                .inserted_since_analyze
                .fetch_add(taken, Ordering::AcqRel);
            return;
        }
        match self.analyze().await {
            Ok(rows) => inner.analyze_threshold.store(
                ANALYZE_AFTER_INSERTING.max(u64::try_from(rows).unwrap_or(0) / 10),
                Ordering::Release,
            ),
            Err(error) => {
                tracing::debug!(%error, "ANALYZE after enqueueing failed; claims may be slower until autovacuum")
            }
        }
    }

    /// `ANALYZE (SKIP_LOCKED)` of the jobs table, then its row count as now estimated.
    /// In a transaction of its own whose `client_min_messages` hides the warning a
    /// skip raises ("skipping analyze … lock not available", each time autovacuum is
    /// at the table): an expected outcome, not one for the application's log.
    async fn analyze(&self) -> std::result::Result<i64, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT set_config('client_min_messages', 'error', true)")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.q().analyze).execute(&mut *tx).await?;
        let rows = sqlx::query_scalar::<_, i64>(&self.q().table_rows)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The connection pool, for a job that reads or writes its own tables in the same
    /// database (for example through [`Keyset`](crate::Keyset)).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema that holds the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.target.schema
    }

    /// The `NOTIFY` channel jobs are announced on, when notifications are on.
    pub fn channel(&self) -> Option<&str> {
        self.inner.channel.as_deref()
    }

    /// Closes every connection of the pool (also those of clones) and stops the
    /// `LISTEN` connection.
    pub async fn close(&self) {
        self.stop_listener();
        let kept = std::mem::take(
            &mut *self
                .inner
                .hot
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(kept);
        self.pool.close().await;
    }

    /// Where the store lives, for messages.
    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    /// `job_checkpoint_in_transaction.sql` for this store's schema.
    pub(crate) fn checkpoint_in_tx_sql(&self) -> &str {
        &self.q().checkpoint_in_tx
    }

    /// `job_exists.sql` for this store's schema.
    pub(crate) fn exists_sql(&self) -> &str {
        &self.q().exists
    }

    fn err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |err| map_sqlx(&self.inner.target, what, err)
    }

    fn q(&self) -> &Queries {
        &self.inner.queries
    }

    fn channel_param(&self) -> Option<&str> {
        self.inner.channel.as_deref()
    }

    /// Wakes this process's waiting workers.
    fn wake_local(&self) {
        self.inner.available.notify_waiters();
    }

    async fn begin(&self, what: &'static str) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(self.err(what))
    }

    /// The error for a fenced write that changed nothing: the job is gone, or it is
    /// not running under this token any more.
    async fn fence_failed(&self, id: JobId) -> Error {
        match sqlx::query(&self.q().exists)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        {
            Ok(Some(_)) => Error::LeaseLost { job: id },
            Ok(None) => Error::JobNotFound(id),
            Err(err) => map_sqlx(
                &self.inner.target,
                "checking a job after a rejected write",
                err,
            ),
        }
    }

    fn record(&self, row: &PgRow) -> Result<JobRecord> {
        record::job_record::<PgDialect>(row).map_err(|message| self.corrupt(message))
    }

    fn control(&self, row: &PgRow) -> Result<iterjob::store::Control> {
        record::control::<PgDialect>(row).map_err(|message| self.corrupt(message))
    }

    fn corrupt(&self, message: String) -> Error {
        Error::Corrupt(format!("PostgreSQL store {}: {message}", self.inner.target))
    }

    /// Reads and locks a job inside a transaction, for the admin actions.
    async fn get_locked(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: JobId,
    ) -> Result<JobRecord> {
        let row = sqlx::query(&self.q().get_for_update)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err("reading a job"))?
            .ok_or(Error::JobNotFound(id))?;
        self.record(&row)
    }

    /// Begins an operator's action: locks and reads the job, and decides what the
    /// action does to it (the same rules on every store). `Ok(Err(record))` when
    /// nothing changes (the transaction is over); a refusal is an error.
    async fn admin_begin(
        &self,
        id: JobId,
        action: AdminAction,
        what: &'static str,
    ) -> Result<
        std::result::Result<(Transaction<'static, Postgres>, JobRecord, AdminStep), JobRecord>,
    > {
        let mut tx = self.begin(what).await?;
        let record = match self.get_locked(&mut tx, id).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        let split = match self.is_split_parent(&mut tx, &record).await {
            Ok(split) => split,
            Err(err) => return rollback(tx, err).await,
        };
        match admin_step(action, &record, split) {
            Ok(AdminStep::Unchanged) => rollback(tx, Ok(Err(record))).await,
            Ok(step) => Ok(Ok((tx, record, step))),
            Err(err) => rollback(tx, err).await,
        }
    }

    /// Runs an admin update (`$1` id) inside the transaction that locked the job,
    /// records the operator's `event`, announces the job if it became claimable, and
    /// commits.
    async fn admin_update(
        &self,
        mut tx: Transaction<'static, Postgres>,
        query: &str,
        id: JobId,
        event: JobEventKind,
        on_error: impl FnOnce(sqlx::Error) -> Error + Send,
    ) -> Result<JobRecord> {
        let row = match sqlx::query(query).bind(id).fetch_one(&mut *tx).await {
            Ok(row) => row,
            Err(err) => return rollback(tx, Err(on_error(err))).await,
        };
        if let Err(err) = events::insert(&mut *tx, self.schema(), &[id], event, None, None).await {
            let err = map_sqlx(
                &self.inner.target,
                "recording an admin action in the job's history",
                err,
            );
            return rollback(tx, err).await;
        }
        let record = self.record(&row)?;
        let claimable = record.state == JobState::Queued;
        if claimable {
            self.announce(&mut tx, std::slice::from_ref(&record.queue))
                .await?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing an admin action"))?;
        if claimable {
            self.wake_local();
        }
        Ok(record)
    }

    /// A split parent reports its partitions' summed progress.
    async fn with_progress(&self, mut record: JobRecord) -> Result<JobRecord> {
        if record.partitions.is_none() {
            return Ok(record);
        }
        let row = sqlx::query(&self.q().parent_progress)
            .bind(record.id)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("summing a partitioned job's progress"))?;
        iterjob_sql::record::apply_parent_progress::<crate::dialect::PgDialect>(&mut record, &row)
            .map_err(|message| {
                Error::Corrupt(format!("PostgreSQL store {}: {message}", self.inner.target))
            })?;
        Ok(record)
    }

    /// True if `record` is a parent already split into partitions.
    async fn is_split_parent(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        record: &JobRecord,
    ) -> Result<bool> {
        if record.partitions.is_none() {
            return Ok(false);
        }
        let partitions: i64 = sqlx::query_scalar(&self.q().parent_progress)
            .bind(record.id)
            .fetch_one(&mut **tx)
            .await
            .map_err(self.err("counting a job's partitions"))?;
        Ok(partitions > 0)
    }

    /// Moves a split parent (locked in `tx`) to `state` and its partitions along with
    /// it (the `children` query, `$1` the parent), announces what became claimable,
    /// and commits.
    async fn cascade(
        &self,
        mut tx: Transaction<'static, Postgres>,
        id: JobId,
        state: JobState,
        children: &str,
        what: &'static str,
    ) -> Result<JobRecord> {
        let reset = state == JobState::Running && children == self.q().retry_children;
        let row = match sqlx::query(&self.q().parent_state)
            .bind(id)
            .bind(state.as_str())
            .bind(None::<String>)
            .bind(reset)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => return rollback(tx, Err(map_sqlx(&self.inner.target, what, err))).await,
        };
        if let Err(err) = sqlx::query(children).bind(id).execute(&mut *tx).await {
            return rollback(tx, Err(map_sqlx(&self.inner.target, what, err))).await;
        }
        let record = self.record(&row)?;
        let event = match state {
            JobState::Paused => JobEventKind::OperatorPause,
            JobState::Cancelled => JobEventKind::OperatorCancel,
            _ if reset => JobEventKind::OperatorRetry,
            _ => JobEventKind::OperatorResume,
        };
        if let Err(err) = events::insert(&mut *tx, self.schema(), &[id], event, None, None).await {
            let err = map_sqlx(
                &self.inner.target,
                "recording an admin action in the job's history",
                err,
            );
            return rollback(tx, err).await;
        }
        let claimable = state == JobState::Running;
        if claimable {
            self.announce(&mut tx, std::slice::from_ref(&record.queue))
                .await?;
        }
        tx.commit().await.map_err(self.err(what))?;
        if claimable {
            self.wake_local();
        }
        self.with_progress(record).await
    }

    /// Finishes a split parent whose partitions have all finished, in a transaction
    /// of its own that locks the parent first: of two partitions finishing at once,
    /// the one that locks second sees the other finished.
    async fn finalize_now(&self, parent: JobId) -> Result<()> {
        let mut tx = self.begin("finishing a partitioned job").await?;
        let record = match self.get_locked(&mut tx, parent).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        if !matches!(record.state, JobState::Running | JobState::Paused)
            || record.worker_id.is_some()
        {
            return rollback(tx, Ok(())).await;
        }
        let rows = match sqlx::query(&self.q().partitions)
            .bind(parent)
            .fetch_all(&mut *tx)
            .await
        {
            Ok(rows) => rows,
            Err(err) => {
                let err = map_sqlx(&self.inner.target, "reading a job's partitions", err);
                return rollback(tx, err).await;
            }
        };
        let children = rows
            .iter()
            .map(|row| self.record(row))
            .collect::<Result<Vec<_>>>()?;
        let Some((state, error)) = parent_outcome(&children) else {
            return rollback(tx, Ok(())).await;
        };
        if let Err(err) = sqlx::query(&self.q().parent_state)
            .bind(parent)
            .bind(state.as_str())
            .bind(error)
            .bind(false)
            .execute(&mut *tx)
            .await
        {
            let err = map_sqlx(&self.inner.target, "finishing a partitioned job", err);
            return rollback(tx, err).await;
        }
        tx.commit()
            .await
            .map_err(self.err("finishing a partitioned job"))
    }

    /// Sends the NOTIFY for jobs made claimable in `queues`, inside `tx` (delivered at
    /// commit). Nothing when notifications are off.
    async fn announce(&self, tx: &mut sqlx::PgConnection, queues: &[String]) -> Result<()> {
        let Some(channel) = self.channel_param() else {
            return Ok(());
        };
        if queues.is_empty() {
            return Ok(());
        }
        sqlx::query(&self.q().notify)
            .bind(channel)
            .bind(queues)
            .execute(&mut *tx)
            .await
            .map_err(self.err("announcing claimable jobs"))?;
        Ok(())
    }
}

/// Ends an admin transaction that changes nothing (or failed) at once, releasing
/// the job's row lock now rather than when the connection is next used.
pub(super) async fn rollback<T>(
    tx: Transaction<'static, Postgres>,
    result: impl Into<RollbackResult<T>>,
) -> Result<T> {
    let _ = tx.rollback().await;
    result.into().0
}

/// What [`rollback`] returns: an error, or a result.
pub(super) struct RollbackResult<T>(Result<T>);

impl<T> From<Error> for RollbackResult<T> {
    fn from(err: Error) -> Self {
        RollbackResult(Err(err))
    }
}

impl<T> From<Result<T>> for RollbackResult<T> {
    fn from(result: Result<T>) -> Self {
        RollbackResult(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_limits_are_exact_then_steps_then_powers_of_two() {
        assert_eq!(claim_limit(1), 1);
        assert_eq!(claim_limit(12), 12);
        assert_eq!(claim_limit(32), 32);
        assert_eq!(claim_limit(33), 48);
        assert_eq!(claim_limit(64), 64);
        assert_eq!(claim_limit(65), 80);
        assert_eq!(claim_limit(72), 80);
        assert_eq!(claim_limit(256), 256);
        assert_eq!(claim_limit(257), 512);
        assert_eq!(claim_limit(MAX_CLAIM), 16_384);
        let statements: std::collections::BTreeSet<usize> =
            (1..=MAX_CLAIM).map(claim_limit).collect();
        assert!(statements.len() <= 52, "{} statements", statements.len());
    }
}

/// The claim statement's plan, on the test server (`ITERJOB_TEST_PG_URL`): the
/// statement is private, so its plan is checked here rather than in `tests/`.
#[cfg(test)]
mod claim_plan {
    use super::*;
    use crate::PgOptions;
    use iterjob::store::NewJob;

    fn url() -> String {
        std::env::var("ITERJOB_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
    }

    /// The plan's nodes that read the whole jobs table.
    fn scans_of_jobs(node: &serde_json::Value, found: &mut Vec<String>) {
        if node["Node Type"] == "Seq Scan" && node["Relation Name"] == "jobs" {
            found.push(node.to_string());
        }
        if let Some(children) = node["Plans"].as_array() {
            for child in children {
                scans_of_jobs(child, found);
            }
        }
    }

    /// A claim updates its rows by primary key at every claim size. With the claimed
    /// rows joined to the jobs table, a claim of 300 (`LIMIT 512`) on 20,000 queued
    /// jobs was planned as a hash join over a sequential scan of the whole table.
    #[tokio::test]
    async fn claims_never_scan_the_whole_jobs_table() {
        let schema = format!("iterjob_test_{:016x}", rand::random::<u64>());
        let store = match PgStore::connect_with(PgOptions::new(url()).schema(&schema)).await {
            Ok(store) => store,
            Err(err) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: PostgreSQL test server unreachable ({err})");
                return;
            }
            Err(err) => panic!("PostgreSQL test server unreachable and CI is set: {err}"),
        };
        let jobs: Vec<NewJob> = (0..20_000)
            .map(|i| NewJob::new("k", serde_json::json!(i)))
            .collect();
        store.job_insert_many(&jobs).await.expect("enqueue");
        let mut found = Vec::new();
        // up to a twentieth of the table: a claim of a good part of it may rightly
        // pick its rows by a scan
        for n in [1, 12, 72, 136, 300, 600, 1000] {
            let sql = store
                .q()
                .claim
                .replace("{claim_limit}", &claim_limit(n).to_string());
            let tokens: Vec<i64> = (0..n as i64).collect();
            let plan: serde_json::Value =
                sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
                    .bind("w")
                    .bind(30_000i64)
                    .bind(vec!["default".to_string()])
                    .bind(vec!["k".to_string()])
                    .bind(&tokens)
                    .fetch_one(store.pool())
                    .await
                    .expect("explain the claim");
            let mut scans = Vec::new();
            scans_of_jobs(&plan[0]["Plan"], &mut scans);
            if !scans.is_empty() {
                found.push(format!("claim of {n}: {}", scans.join(", ")));
            }
        }
        store.close().await;
        let mut admin = PgConnection::connect(&url()).await.expect("connect");
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&mut admin)
            .await
            .expect("drop the test schema");
        assert!(
            found.is_empty(),
            "claims read the whole jobs table:\n{}",
            found.join("\n")
        );
    }
}
