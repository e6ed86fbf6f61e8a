//! [`MySqlStore`]: the [`Store`] on a MySQL 8 or MariaDB 10.6+ database, for any
//! number of workers on any number of machines.
//!
//! Every method is one statement, or one short transaction when it must read before
//! it writes: claims pick their jobs with `SELECT … FOR UPDATE SKIP LOCKED` and take
//! them in the same transaction (MySQL has no `UPDATE … RETURNING`), the admin
//! actions lock the job's row with `FOR UPDATE`. No transaction and no lock is held
//! while a job runs: a run owns its job through its lease and run token alone. The
//! pool's sessions run at `READ COMMITTED`, so locking reads lock the rows they
//! return and not the gaps between them.
//!
//! Choices the [`Store`] trait leaves open are made as in the other stores: a fenced
//! write for a job that does not exist fails with [`Error::JobNotFound`], for a job
//! under another token (or no longer running) with [`Error::LeaseLost`].
//!
//! Timestamps come from the database server's clock (`NOW(3)`), never the worker's,
//! except the `run_at` values the runtime computes for retries and interruptions.
//!
//! **Wake-ups.** MySQL has no `LISTEN`/`NOTIFY`. A store wakes its own process's
//! waiting workers at once when it makes jobs claimable; for the other processes a
//! watch task (one per store, started by the first waiting worker) asks the server
//! every [`MySqlOptions::watch_interval`] (100 ms by default) whether a job was
//! added or became claimable — two index lookups — and wakes the workers when so.
//! The workers' own polling covers the rest.
//!
//! The store is laid out one idea per file, as the PostgreSQL store: `options`,
//! `queries`, `watch` (wake-ups), `insert` (enqueueing), `methods` (the [`Store`]
//! trait).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use iterjob::store::rules::{AdminAction, AdminStep, admin_step};
use iterjob::store::{Control, JobEventKind, JobId, JobRecord, JobState, Store, parent_outcome};
use iterjob::{Error, Result};
use iterjob_sql::record;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Connection, Executor, MySql, MySqlConnection, Row, Transaction};
use tokio::sync::Notify;

use crate::dialect::MySqlDialect;
use crate::error::{Target, map_sqlx};
use crate::events;

mod insert;
mod methods;
mod options;
mod queries;
mod watch;

use options::target_of;
pub use options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WATCH_INTERVAL, MySqlOptions,
};
use queries::Queries;
use watch::Watch;

/// How many jobs `job_list` returns when the filter sets no limit.
pub(super) const DEFAULT_LIST_LIMIT: usize = 100;

/// Jobs per `INSERT` statement when enqueueing a large batch.
pub(super) const INSERT_CHUNK: usize = 1_000;

/// At most this many jobs per claim, whatever the request says.
pub(super) const MAX_CLAIM: usize = 1_000;

/// Whether the server hands out consecutive ids to a multi-row `INSERT`.
const IDS_UNKNOWN: u8 = 0;
const IDS_CONSECUTIVE: u8 = 1;
const IDS_INTERLEAVED: u8 = 2;

/// What clones of a store share.
struct Inner {
    target: Target,
    queries: Queries,
    /// Woken when jobs may have become claimable: by this store's own writes, and by
    /// the watch task for other processes' writes.
    available: Arc<Notify>,
    /// The watch task, started by the first `job_wait_available`.
    watch: Mutex<Option<Watch>>,
    /// How often the watch task asks the server.
    watch_interval: std::time::Duration,
    /// Whether a multi-row `INSERT` gets consecutive ids (`innodb_autoinc_lock_mode`).
    ids: AtomicU8,
}

/// The MySQL and MariaDB [`Store`]: jobs in a database that any number of worker
/// processes on any number of machines share.
///
/// Cloning is cheap: clones share the connection pool and the watch task.
///
/// ```no_run
/// use iterjob::store::{NewJob, Store};
/// use iterjob_mysql::MySqlStore;
///
/// # async fn demo() -> iterjob::Result<()> {
/// // iterjob's tables created and migrated in database `app` if needed
/// let store = MySqlStore::connect("mysql://app@db.internal/app").await?;
/// let ids = store
///     .job_insert_many(&[NewJob::new("reindex", serde_json::json!({"shard": 3}))])
///     .await?;
/// println!("enqueued job {}", ids[0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    inner: Arc<Inner>,
}

impl fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStore")
            .field("server", &self.inner.target.server)
            .finish_non_exhaustive()
    }
}

impl MySqlStore {
    /// Connects to `url` (`mysql://user[:password]@host[:port]/database`) and creates
    /// or migrates iterjob's tables in that database. See [`MySqlOptions`] for the
    /// defaults.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL does not parse or names a database that does
    /// not exist; [`Error::Backend`] when the server cannot be reached (the message
    /// names host and port and what to check) or refuses the user, or the user lacks
    /// a permission (the message says which `GRANT` helps); [`Error::Corrupt`] when
    /// the tables were written by a newer iterjob.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(MySqlOptions::new(url)).await
    }

    /// Connects with these options and migrates the tables.
    ///
    /// # Errors
    /// As [`MySqlStore::connect`].
    pub async fn connect_with(options: MySqlOptions) -> Result<Self> {
        let connect = options.resolve()?;
        let target = target_of(&connect);
        if options.max_connections == 0 {
            return Err(Error::Config(format!(
                "MySQL store {target}: max_connections must be at least 1"
            )));
        }
        // One direct connection first: the pool would retry a refused connection until
        // its acquire timeout, and a wrong URL deserves an answer at once.
        let probe = tokio::time::timeout(
            options.connect_timeout,
            MySqlConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            Error::Backend(
                format!(
                    "MySQL store {target}: connecting timed out after {:?}; check that the \
                     server at {} is reachable from here and not overloaded",
                    options.connect_timeout, target.address
                )
                .into(),
            )
        })?
        .map_err(|err| map_sqlx(&target, "connecting", err))?;
        let _ = probe.close().await;
        let pool = Self::pool_options(&options).connect_lazy_with(connect);
        let store = MySqlStore::build(pool, target, options.watch_interval);
        if options.migrate {
            store.migrate().await?;
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// Checks, changing nothing, that the tables are the ones this build writes.
    ///
    /// # Errors
    /// [`Error::Config`] when the database has no iterjob tables or an older
    /// version (the message says to run `migrate`); [`Error::Corrupt`] when a newer
    /// iterjob wrote them; [`Error::Backend`] when the server cannot be read.
    pub async fn check_schema(&self) -> Result<()> {
        let target = &self.inner.target;
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'iterjob_schema_migrations'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_sqlx(target, "looking up the tables", e))?;
        let newest: Option<i64> = if exists > 0 {
            sqlx::query_scalar("SELECT MAX(version) FROM iterjob_schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| map_sqlx(target, "reading the schema version", e))?
        } else {
            None
        };
        iterjob_sql::schema::check_version(
            &format!("MySQL store {target}"),
            newest,
            crate::SCHEMA_VERSION,
            concat!("iterjob-mysql ", env!("CARGO_PKG_VERSION")),
        )
    }

    /// A store whose pool connects on first use, without touching the server now:
    /// no connection check, no migration (the tables must exist). For a job that
    /// opens the store its parameters name from synchronous code; use
    /// [`MySqlStore::connect_with`] to open a store that is checked and migrated.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is invalid.
    pub fn lazy(options: MySqlOptions) -> Result<Self> {
        let connect = options.resolve()?;
        let target = target_of(&connect);
        let pool = Self::pool_options(&options).connect_lazy_with(connect);
        Ok(MySqlStore::build(pool, target, options.watch_interval))
    }

    /// The pool the store opens: its size, and sessions at `READ COMMITTED`.
    fn pool_options(options: &MySqlOptions) -> MySqlPoolOptions {
        iterjob_sql::pool::hygienic(MySqlPoolOptions::new())
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // locking reads lock the rows they return, not the gaps between
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(drop)
                })
            })
    }

    /// A store on an existing pool (its database holds iterjob's tables), for an
    /// application that already has one. Does not touch the database: call
    /// [`Store::migrate`] before using the store. The pool's sessions should run at
    /// `READ COMMITTED` (`SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED` in
    /// `after_connect`); at MySQL's default `REPEATABLE READ`, claims also lock the
    /// gaps they scan and contend more.
    pub fn from_pool(pool: MySqlPool) -> Self {
        let connect: MySqlConnectOptions = pool.connect_options().as_ref().clone();
        let target = target_of(&connect);
        MySqlStore::build(pool, target, options::DEFAULT_WATCH_INTERVAL)
    }

    fn build(pool: MySqlPool, target: Target, watch_interval: std::time::Duration) -> Self {
        MySqlStore {
            pool,
            inner: Arc::new(Inner {
                target,
                queries: Queries::new(),
                available: Arc::new(Notify::new()),
                watch: Mutex::new(None),
                watch_interval,
                ids: AtomicU8::new(IDS_UNKNOWN),
            }),
        }
    }

    /// The connection pool, for a job that reads or writes its own tables in the same
    /// database (for example through [`Keyset`](crate::Keyset)).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Closes every connection of the pool (also those of clones) and stops the
    /// watch task.
    pub async fn close(&self) {
        self.stop_watch();
        self.pool.close().await;
    }

    /// Where the store lives, for messages.
    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    /// `job_checkpoint_in_transaction.sql`, rendered.
    pub(crate) fn checkpoint_in_tx_sql(&self) -> &str {
        &self.q().checkpoint_in_tx
    }

    /// `job_exists.sql`.
    pub(crate) fn exists_sql(&self) -> &str {
        &self.q().exists
    }

    fn err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |err| map_sqlx(&self.inner.target, what, err)
    }

    fn q(&self) -> &Queries {
        &self.inner.queries
    }

    /// Wakes this process's waiting workers.
    fn wake_local(&self) {
        self.inner.available.notify_waiters();
    }

    async fn begin(&self, what: &'static str) -> Result<Transaction<'static, MySql>> {
        self.pool.begin().await.map_err(self.err(what))
    }

    /// Whether a multi-row `INSERT` gets consecutive ids, read once from the server.
    async fn consecutive_ids(&self) -> Result<bool> {
        match self.inner.ids.load(Ordering::Relaxed) {
            IDS_CONSECUTIVE => return Ok(true),
            IDS_INTERLEAVED => return Ok(false),
            _ => {}
        }
        let mode: i64 = sqlx::query_scalar("SELECT @@innodb_autoinc_lock_mode")
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reading innodb_autoinc_lock_mode"))?;
        // 0 (traditional) and 1 (consecutive) give a multi-row INSERT consecutive ids;
        // 2 (interleaved, MySQL 8's default) may not
        let consecutive = mode <= 1;
        self.inner.ids.store(
            if consecutive {
                IDS_CONSECUTIVE
            } else {
                IDS_INTERLEAVED
            },
            Ordering::Relaxed,
        );
        Ok(consecutive)
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

    fn record(&self, row: &MySqlRow) -> Result<JobRecord> {
        record::job_record::<MySqlDialect>(row).map_err(|message| self.corrupt(message))
    }

    fn control(&self, row: &MySqlRow) -> Result<Control> {
        record::control::<MySqlDialect>(row).map_err(|message| self.corrupt(message))
    }

    fn corrupt(&self, message: String) -> Error {
        Error::Corrupt(format!("MySQL store {}: {message}", self.inner.target))
    }

    /// Reads a job inside a transaction.
    async fn get_in(&self, tx: &mut MySqlConnection, id: JobId) -> Result<JobRecord> {
        let row = sqlx::query(&self.q().get)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("reading a job"))?
            .ok_or(Error::JobNotFound(id))?;
        self.record(&row)
    }

    /// Reads and locks a job inside a transaction, for the admin actions.
    async fn get_locked(&self, tx: &mut MySqlConnection, id: JobId) -> Result<JobRecord> {
        let row = sqlx::query(&self.q().get_for_update)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("reading a job"))?
            .ok_or(Error::JobNotFound(id))?;
        self.record(&row)
    }

    /// Begins an operator's action: locks and reads the job, and decides what the
    /// action does to it (the same rules on every store). `Ok(Err(record))` when
    /// nothing changes.
    #[allow(clippy::type_complexity)]
    async fn admin_begin(
        &self,
        id: JobId,
        action: AdminAction,
        what: &'static str,
    ) -> Result<std::result::Result<(Transaction<'static, MySql>, JobRecord, AdminStep), JobRecord>>
    {
        let mut tx = self.begin(what).await?;
        let record = self.get_locked(&mut tx, id).await?;
        let split = self.is_split_parent(&mut tx, &record).await?;
        match admin_step(action, &record, split)? {
            AdminStep::Unchanged => {
                let _ = tx.rollback().await;
                Ok(Err(record))
            }
            step => Ok(Ok((tx, record, step))),
        }
    }

    /// Runs an admin update (`?` id) inside the transaction that locked the job,
    /// records the operator's `event`, and commits.
    async fn admin_update(
        &self,
        mut tx: Transaction<'static, MySql>,
        query: &str,
        id: JobId,
        event: JobEventKind,
        on_error: impl FnOnce(sqlx::Error) -> Error + Send,
    ) -> Result<JobRecord> {
        if let Err(err) = sqlx::query(query).bind(id).execute(&mut *tx).await {
            let _ = tx.rollback().await;
            return Err(on_error(err));
        }
        events::insert(&mut *tx, id, event, None, None)
            .await
            .map_err(self.err("recording an admin action in the job's history"))?;
        let record = self.get_in(&mut tx, id).await?;
        tx.commit()
            .await
            .map_err(self.err("committing an admin action"))?;
        if record.state == JobState::Queued {
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
        iterjob_sql::record::apply_parent_progress::<MySqlDialect>(&mut record, &row).map_err(
            |message| Error::Corrupt(format!("MySQL store {}: {message}", self.inner.target)),
        )?;
        Ok(record)
    }

    /// True if `record` is a parent already split into partitions.
    async fn is_split_parent(&self, tx: &mut MySqlConnection, record: &JobRecord) -> Result<bool> {
        if record.partitions.is_none() {
            return Ok(false);
        }
        let row = sqlx::query(&self.q().parent_progress)
            .bind(record.id)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("counting a job's partitions"))?;
        let partitions: i64 = row
            .try_get("partitions")
            .map_err(self.err("counting a job's partitions"))?;
        Ok(partitions > 0)
    }

    /// Moves a split parent (locked in `tx`) to `state` and its partitions along with
    /// it (the `children` query, `?` the parent), and commits.
    async fn cascade(
        &self,
        mut tx: Transaction<'static, MySql>,
        id: JobId,
        state: JobState,
        children: &str,
        what: &'static str,
    ) -> Result<JobRecord> {
        let reset = state == JobState::Running && children == self.q().retry_children;
        sqlx::query(&self.q().parent_state)
            .bind(state.as_str())
            .bind(None::<String>)
            .bind(reset)
            .bind(reset)
            .bind(state.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        sqlx::query(children)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        let event = match state {
            JobState::Paused => JobEventKind::OperatorPause,
            JobState::Cancelled => JobEventKind::OperatorCancel,
            _ if reset => JobEventKind::OperatorRetry,
            _ => JobEventKind::OperatorResume,
        };
        events::insert(&mut *tx, id, event, None, None)
            .await
            .map_err(self.err("recording an admin action in the job's history"))?;
        let record = self.get_in(&mut tx, id).await?;
        tx.commit().await.map_err(self.err(what))?;
        if state == JobState::Running {
            self.wake_local();
        }
        self.with_progress(record).await
    }

    /// Finishes a split parent whose partitions have all finished, in a transaction
    /// of its own that locks the parent first: of two partitions finishing at once,
    /// the one that locks second sees the other finished.
    async fn finalize_now(&self, parent: JobId) -> Result<()> {
        let mut tx = self.begin("finishing a partitioned job").await?;
        let record = self.get_locked(&mut tx, parent).await?;
        if !matches!(record.state, JobState::Running | JobState::Paused)
            || record.worker_id.is_some()
        {
            let _ = tx.rollback().await;
            return Ok(());
        }
        let rows = sqlx::query(&self.q().partitions)
            .bind(parent)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("reading a job's partitions"))?;
        let children = rows
            .iter()
            .map(|row| self.record(row))
            .collect::<Result<Vec<_>>>()?;
        let Some((state, error)) = parent_outcome(&children) else {
            let _ = tx.rollback().await;
            return Ok(());
        };
        sqlx::query(&self.q().parent_state)
            .bind(state.as_str())
            .bind(error)
            .bind(false)
            .bind(false)
            .bind(state.as_str())
            .bind(parent)
            .execute(&mut *tx)
            .await
            .map_err(self.err("finishing a partitioned job"))?;
        tx.commit()
            .await
            .map_err(self.err("finishing a partitioned job"))
    }
}
