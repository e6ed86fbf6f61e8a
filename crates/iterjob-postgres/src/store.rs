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

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use iterjob::store::{
    ClaimRequest, Claimed, Control, JobEvent, JobEventKind, JobFilter, JobId, JobRecord, JobState,
    Millis, NewJob, Outcome, Progress, Release, Rescued, RunToken, Split, SplitRequest, Store,
    duration_millis, now_millis, parent_outcome, rate_cost_micros, release_event,
};
use iterjob::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};
use tokio::sync::Notify;

use crate::error::{Target, is_unique_violation, map_sqlx};
use crate::events;
use crate::migrate::{self, DEFAULT_SCHEMA, render, validate_schema};

mod release_many;

const Q_INSERT: &str = include_str!("../queries/job_insert_many.sql");
const Q_INSERT_IDS: &str = include_str!("../queries/job_insert_many_ids.sql");
const Q_INSERT_UNIQUE: &str = include_str!("../queries/job_insert_many_unique.sql");
const Q_INSERT_EXISTING: &str = include_str!("../queries/job_insert_many_existing.sql");
const Q_NOTIFY: &str = include_str!("../queries/job_notify.sql");
const Q_CLAIM: &str = include_str!("../queries/job_claim.sql");
const Q_HEARTBEAT: &str = include_str!("../queries/job_heartbeat.sql");
const Q_CHECKPOINT: &str = include_str!("../queries/job_checkpoint.sql");
const Q_CHECKPOINT_IN_TX: &str = include_str!("../queries/job_checkpoint_in_transaction.sql");
const Q_RELEASE: &str = include_str!("../queries/job_release.sql");
const Q_RELEASE_MANY: &str = include_str!("../queries/job_release_many.sql");
const Q_RESCUE: &str = include_str!("../queries/job_rescue_expired.sql");
const Q_GET: &str = include_str!("../queries/job_get.sql");
const Q_GET_FOR_UPDATE: &str = include_str!("../queries/job_get_for_update.sql");
const Q_EXISTS: &str = include_str!("../queries/job_exists.sql");
const Q_LIST: &str = include_str!("../queries/job_list.sql");
const Q_COUNT: &str = include_str!("../queries/job_count_by_state.sql");
const Q_PAUSE: &str = include_str!("../queries/job_pause.sql");
const Q_RESUME: &str = include_str!("../queries/job_resume.sql");
const Q_CANCEL: &str = include_str!("../queries/job_cancel.sql");
const Q_RETRY: &str = include_str!("../queries/job_retry.sql");
const Q_ANALYZE: &str = include_str!("../queries/job_analyze.sql");
const Q_INSERT_PARTITION: &str = include_str!("../queries/job_insert_partition.sql");
const Q_PARTITION: &str = include_str!("../queries/job_partition.sql");
const Q_SPLIT: &str = include_str!("../queries/job_split.sql");
const Q_PARENT_OF: &str = include_str!("../queries/job_parent_of.sql");
const Q_LOCK_PARENT: &str = include_str!("../queries/job_lock_parent.sql");
const Q_REQUEST_SPLIT: &str = include_str!("../queries/job_request_split.sql");
const Q_PARTITIONS: &str = include_str!("../queries/job_partitions.sql");
const Q_PARENT_PROGRESS: &str = include_str!("../queries/job_parent_progress.sql");
const Q_PARENT_STATE: &str = include_str!("../queries/job_parent_state.sql");
const Q_FINALIZE_CANDIDATES: &str = include_str!("../queries/job_finalize_candidates.sql");
const Q_PAUSE_CHILDREN: &str = include_str!("../queries/job_pause_children.sql");
const Q_RESUME_CHILDREN: &str = include_str!("../queries/job_resume_children.sql");
const Q_CANCEL_CHILDREN: &str = include_str!("../queries/job_cancel_children.sql");
const Q_RETRY_CHILDREN: &str = include_str!("../queries/job_retry_children.sql");
const Q_RATE_ACQUIRE: &str = include_str!("../queries/rate_acquire.sql");

/// An enqueue of at least this many jobs refreshes the table's planner statistics.
const ANALYZE_AFTER_INSERTING: usize = 1000;

/// How many jobs `job_list` returns when the filter sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// Jobs per `INSERT` statement when enqueueing a large batch.
const INSERT_CHUNK: usize = 5_000;

/// At most this many jobs per claim, whatever the request says.
const MAX_CLAIM: usize = 10_000;

/// Claims of up to this many jobs get a statement of their own, with that many as
/// its literal `LIMIT` (see `queries/job_claim.sql`); bigger ones share one per
/// power of two, so a connection prepares at most a few dozen claim statements.
const EXACT_CLAIM_LIMITS: usize = 32;

/// The literal `LIMIT` of the claim statement for a claim of `n` jobs.
fn claim_limit(n: usize) -> usize {
    if n <= EXACT_CLAIM_LIMITS {
        n
    } else {
        n.next_power_of_two()
    }
}

/// Connections in the pool unless [`PgOptions::max_connections`] says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long getting a pooled connection may take unless
/// [`PgOptions::acquire_timeout`] says otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first connection (made by [`PgStore::connect`] to check the URL) may
/// take unless [`PgOptions::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Backoff of the `LISTEN` connection after it failed: from this...
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// ...doubling up to this.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How to open a [`PgStore`]: the URL plus iterjob's own settings.
///
/// ```no_run
/// use iterjob_postgres::{PgOptions, PgStore};
///
/// # async fn demo() -> iterjob::Result<()> {
/// let store = PgStore::connect_with(PgOptions {
///     schema: "billing_jobs".into(),
///     max_connections: 20,
///     ..PgOptions::new("postgres://app@db.internal:5432/app")
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?param=value…]`, anything
    /// sqlx's [`PgConnectOptions`] parses (`sslmode`, `application_name`, a Unix
    /// socket `host`, …). A `schema=NAME` parameter sets [`schema`](Self::schema)
    /// when that is left at its default.
    pub url: String,
    /// The schema that holds iterjob's tables (created by the migration if missing).
    /// Default [`DEFAULT_SCHEMA`] (`iterjob`). A plain identifier: ASCII letters,
    /// digits and `_`, not starting with a digit.
    pub schema: String,
    /// Announce claimable jobs with `NOTIFY` and wake waiting workers through a
    /// `LISTEN` connection (default true). Turn it off behind a transaction-pooling
    /// proxy (PgBouncer `pool_mode=transaction`), where `LISTEN` does not work:
    /// workers then find jobs by polling alone.
    pub notify: bool,
    /// Connections in the pool (default [`DEFAULT_MAX_CONNECTIONS`]). A worker needs
    /// about one per concurrently running job at checkpoint time plus one for
    /// claiming; the `LISTEN` connection comes on top.
    pub max_connections: u32,
    /// How long getting a pooled connection may take before the operation fails
    /// (default [`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub acquire_timeout: Duration,
    /// How long the first connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    /// No URL (set one), schema `iterjob`, notify on, 10 connections.
    fn default() -> Self {
        PgOptions {
            url: String::new(),
            schema: DEFAULT_SCHEMA.to_string(),
            notify: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl PgOptions {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            ..PgOptions::default()
        }
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Turns `LISTEN`/`NOTIFY` wake-ups on or off.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Parses the URL: the connection options, and the schema (from `?schema=` when
    /// [`schema`](Self::schema) is left at its default).
    fn resolve(&self) -> Result<(PgConnectOptions, String)> {
        let raw = self.url.trim();
        if raw.is_empty() {
            return Err(Error::Config(
                "empty PostgreSQL URL; give one such as postgres://user@localhost:5432/app"
                    .to_string(),
            ));
        }
        let shown = redact(raw);
        let mut url = url::Url::parse(raw).map_err(|err| {
            Error::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {err}; expected \
                 postgres://user[:password]@host[:port]/database"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "`{shown}` is not a PostgreSQL URL; it must start with postgres:// or \
                 postgresql://"
            )));
        }
        let mut from_url = None;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "schema" {
                    from_url = Some(v.into_owned());
                    None
                } else {
                    Some((k.into_owned(), v.into_owned()))
                }
            })
            .collect();
        if from_url.is_some() {
            if pairs.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        let schema = match from_url {
            Some(s) if self.schema == DEFAULT_SCHEMA => s,
            Some(s) if s != self.schema => {
                return Err(Error::Config(format!(
                    "PostgreSQL URL `{shown}` names schema `{s}` but the options name schema \
                     `{}`; give it once",
                    self.schema
                )));
            }
            _ => self.schema.clone(),
        };
        validate_schema(&schema)?;
        let mut options = PgConnectOptions::from_str(url.as_str()).map_err(|err| {
            Error::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {err}; expected \
                 postgres://user[:password]@host[:port]/database"
            ))
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("iterjob");
        }
        Ok((options, schema))
    }
}

/// The URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(unparseable URL)".to_string(),
    }
}

fn target_of(options: &PgConnectOptions, schema: &str) -> Target {
    let host = options.get_host().to_string();
    let port = options.get_port();
    let address = match options.get_socket() {
        Some(dir) => format!("{} (Unix socket)", dir.display()),
        None => format!("{host}:{port}"),
    };
    let user = options.get_username().to_string();
    let database = options.get_database().unwrap_or(&user).to_string();
    Target {
        server: format!("postgres://{user}@{host}:{port}/{database}"),
        address,
        host,
        port,
        database,
        user,
        schema: schema.to_string(),
    }
}

/// The SQL of every query, for one schema.
#[derive(Debug)]
struct Queries {
    insert: String,
    insert_ids: String,
    insert_unique: String,
    insert_existing: String,
    notify: String,
    claim: String,
    heartbeat: String,
    checkpoint: String,
    checkpoint_in_tx: String,
    release: String,
    release_many: String,
    rescue: String,
    get: String,
    get_for_update: String,
    exists: String,
    list: String,
    count: String,
    pause: String,
    resume: String,
    cancel: String,
    retry: String,
    analyze: String,
    insert_partition: String,
    partition: String,
    split: String,
    parent_of: String,
    lock_parent: String,
    request_split: String,
    partitions: String,
    parent_progress: String,
    parent_state: String,
    finalize_candidates: String,
    pause_children: String,
    resume_children: String,
    cancel_children: String,
    retry_children: String,
    rate_acquire: String,
}

impl Queries {
    fn new(schema: &str) -> Self {
        let r = |sql| render(sql, schema);
        Queries {
            insert: r(Q_INSERT),
            insert_ids: r(Q_INSERT_IDS),
            insert_unique: r(Q_INSERT_UNIQUE),
            insert_existing: r(Q_INSERT_EXISTING),
            notify: r(Q_NOTIFY),
            claim: r(Q_CLAIM),
            heartbeat: r(Q_HEARTBEAT),
            checkpoint: r(Q_CHECKPOINT),
            checkpoint_in_tx: r(Q_CHECKPOINT_IN_TX),
            release: r(Q_RELEASE),
            release_many: r(Q_RELEASE_MANY),
            rescue: r(Q_RESCUE),
            get: r(Q_GET),
            get_for_update: r(Q_GET_FOR_UPDATE),
            exists: r(Q_EXISTS),
            list: r(Q_LIST),
            count: r(Q_COUNT),
            pause: r(Q_PAUSE),
            resume: r(Q_RESUME),
            cancel: r(Q_CANCEL),
            retry: r(Q_RETRY),
            analyze: r(Q_ANALYZE),
            insert_partition: r(Q_INSERT_PARTITION),
            partition: r(Q_PARTITION),
            split: r(Q_SPLIT),
            parent_of: r(Q_PARENT_OF),
            lock_parent: r(Q_LOCK_PARENT),
            request_split: r(Q_REQUEST_SPLIT),
            partitions: r(Q_PARTITIONS),
            parent_progress: r(Q_PARENT_PROGRESS),
            parent_state: r(Q_PARENT_STATE),
            finalize_candidates: r(Q_FINALIZE_CANDIDATES),
            pause_children: r(Q_PAUSE_CHILDREN),
            resume_children: r(Q_RESUME_CHILDREN),
            cancel_children: r(Q_CANCEL_CHILDREN),
            retry_children: r(Q_RETRY_CHILDREN),
            rate_acquire: r(Q_RATE_ACQUIRE),
        }
    }
}

/// Connections [`PgStore::hot`] keeps at most (never more than half the pool).
const MAX_HOT: u32 = 2;

/// A connection lent by [`PgStore::hot`]: dropped, it goes back to the pool;
/// [`Hot::keep`] keeps it for the next statement of the hot path instead.
struct Hot<'a> {
    store: &'a PgStore,
    conn: Option<PoolConnection<Postgres>>,
}

impl Hot<'_> {
    /// The connection.
    fn conn(&mut self) -> &mut PgConnection {
        match self.conn.as_mut() {
            Some(conn) => conn,
            None => unreachable!("a lent connection is taken only by `keep`"),
        }
    }

    /// Keeps the connection for the next statement (the one just run succeeded, so
    /// it is idle and usable), unless enough are kept already.
    fn keep(mut self) {
        let store = self.store;
        if store.pool.is_closed() {
            return;
        }
        if let Some(conn) = self.conn.take() {
            let mut hot = store
                .inner
                .hot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if hot.len() < store.inner.max_hot {
                hot.push(conn);
            }
            // the pool closed meanwhile (maybe after the watch below gave the kept
            // ones back): keep none
            if store.pool.is_closed() {
                hot.clear();
            }
        }
        let mut watch = store
            .inner
            .hot_watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if watch.is_none() {
            // A kept connection holds one of the pool's permits, and closing the pool
            // waits for every permit: give them back as soon as the pool closes.
            let closed = store.pool.close_event();
            let inner = Arc::downgrade(&store.inner);
            *watch = Some(BackgroundTask(tokio::spawn(async move {
                closed.await;
                if let Some(inner) = inner.upgrade() {
                    inner
                        .hot
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                }
            })));
        }
    }
}

/// A background task of the store (the `LISTEN` task, the watch on the pool's
/// closing); aborted when the last clone of the store goes away.
struct BackgroundTask(tokio::task::JoinHandle<()>);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
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
        let (connect, schema) = options.resolve()?;
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

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let store = PgStore::build(pool, connect, target, options.notify);
        store.migrate().await?;
        Ok(store)
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
            }),
        }
    }

    /// A connection for one statement of the worker's hot path (claims, releases,
    /// heartbeats, checkpoints): one kept from an earlier statement, else one from
    /// the pool. [`Hot::keep`] after a statement that succeeded keeps it for the next.
    ///
    /// Every pool checkout costs round trips of its own: sqlx pings a connection
    /// before handing it out and again when it comes back, so a claim or release
    /// through the pool took three round trips where one does. A kept connection
    /// skips both pings; one whose statement failed goes back to the pool, whose
    /// ping closes it if it is broken (a server restart, a killed backend).
    async fn hot(&self, what: &'static str) -> Result<Hot<'_>> {
        let kept = self
            .inner
            .hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match kept {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(self.err(what))?,
        };
        Ok(Hot {
            store: self,
            conn: Some(conn),
        })
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

    fn stop_listener(&self) {
        let task = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(task);
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

    /// Starts the `LISTEN` task unless it runs (or notifications are off).
    fn ensure_listener(&self) {
        let Some(channel) = &self.inner.channel else {
            return;
        };
        let mut slot = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|task| !task.0.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(listen(
            self.inner.listen_options.clone(),
            channel.clone(),
            Arc::clone(&self.inner.available),
            self.inner.target.clone(),
        ));
        *slot = Some(BackgroundTask(task));
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
        record_from_row(row).map_err(|message| {
            Error::Corrupt(format!("PostgreSQL store {}: {message}", self.inner.target))
        })
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
        let get = |col: &str| -> Result<Option<i64>> {
            row.try_get::<Option<i64>, _>(col)
                .map_err(|e| Error::Corrupt(format!("partition progress, column `{col}`: {e}")))
        };
        if get("partitions")?.unwrap_or(0) > 0 {
            record.items_done = get("items_done")?.map_or(0, |n| u64::try_from(n).unwrap_or(0));
            record.items_total = get("items_total")?.map(|n| u64::try_from(n).unwrap_or(0));
            record.running_ms = get("running_ms")?.map_or(0, |n| u64::try_from(n).unwrap_or(0));
        }
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
    async fn announce(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        queues: &[String],
    ) -> Result<()> {
        let Some(channel) = self.channel_param() else {
            return Ok(());
        };
        if queues.is_empty() {
            return Ok(());
        }
        sqlx::query(&self.q().notify)
            .bind(channel)
            .bind(queues)
            .execute(&mut **tx)
            .await
            .map_err(self.err("announcing claimable jobs"))?;
        Ok(())
    }

    /// Inserts a run of jobs without unique keys; returns their ids in order.
    async fn insert_plain(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let count = i32::try_from(jobs.len()).unwrap_or(i32::MAX);
        let mut ids: Vec<JobId> = sqlx::query_scalar(&self.q().insert_ids)
            .bind(count)
            .fetch_all(&mut **tx)
            .await
            .map_err(self.err("drawing job ids"))?;
        ids.sort_unstable();
        let mut kinds = Vec::with_capacity(jobs.len());
        let mut queues = Vec::with_capacity(jobs.len());
        let mut priorities = Vec::with_capacity(jobs.len());
        let mut params = Vec::with_capacity(jobs.len());
        let mut cursors = Vec::with_capacity(jobs.len());
        let mut max_attempts = Vec::with_capacity(jobs.len());
        let mut run_ats = Vec::with_capacity(jobs.len());
        let mut partitions = Vec::with_capacity(jobs.len());
        for job in jobs {
            kinds.push(job.kind.as_str());
            queues.push(job.queue.as_str());
            priorities.push(job.priority);
            params.push(json_text(&job.params, "job parameters")?);
            cursors.push(
                job.cursor
                    .as_ref()
                    .map(|c| json_text(c, "job cursor"))
                    .transpose()?,
            );
            max_attempts.push(i64::from(job.max_attempts));
            run_ats.push(job.run_at);
            partitions.push(job.partitions.map(|n| i32::try_from(n).unwrap_or(i32::MAX)));
        }
        sqlx::query(&self.q().insert)
            .bind(&ids)
            .bind(&kinds)
            .bind(&queues)
            .bind(&priorities)
            .bind(&params)
            .bind(&cursors)
            .bind(&max_attempts)
            .bind(&run_ats)
            .bind(&partitions)
            .execute(&mut **tx)
            .await
            .map_err(self.err("enqueueing jobs"))?;
        Ok(ids)
    }

    /// Inserts one job with a unique key, or finds the unfinished job holding it.
    async fn insert_unique(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        job: &NewJob,
        key: &str,
    ) -> Result<JobId> {
        let params = json_text(&job.params, "job parameters")?;
        let cursor = job
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        // The holder of the key may finish between the insert and the lookup; then
        // the insert succeeds on the next round.
        for _ in 0..5 {
            let inserted: Option<JobId> = sqlx::query_scalar(&self.q().insert_unique)
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(job.priority)
                .bind(&params)
                .bind(&cursor)
                .bind(i64::from(job.max_attempts))
                .bind(key)
                .bind(job.run_at)
                .bind(job.partitions.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                .fetch_optional(&mut **tx)
                .await
                .map_err(self.err("enqueueing a job"))?;
            if let Some(id) = inserted {
                return Ok(id);
            }
            let existing: Option<JobId> = sqlx::query_scalar(&self.q().insert_existing)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(self.err("looking up a job's unique key"))?;
            if let Some(id) = existing {
                return Ok(id);
            }
        }
        Err(Error::Backend(
            format!(
                "PostgreSQL store {}: enqueueing a job with unique key `{key}` kept conflicting \
                 with jobs that finished at once; retry",
                self.inner.target
            )
            .into(),
        ))
    }
}

/// The `LISTEN` task: holds one connection (from a pool of its own, so the store's
/// pool keeps its size) listening on `channel`, and wakes `available` on each of
/// iterjob's notifications. Reconnects after a lost connection with a backoff from
/// 250 ms to 30 s, waking the waiters each time (notifications sent meanwhile are
/// lost; the waiters look for themselves). Foreign payloads are logged at debug and
/// ignored. Runs until aborted.
async fn listen(
    options: PgConnectOptions,
    channel: String,
    available: Arc<Notify>,
    target: Target,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options.application_name("iterjob-listener"));
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        match listen_once(&pool, &channel, &available).await {
            Ok(()) => backoff = LISTEN_BACKOFF_MIN,
            Err(err) => {
                let err = map_sqlx(&target, "listening for job notifications", err);
                tracing::warn!(
                    %err,
                    retry_in = ?backoff,
                    "iterjob LISTEN connection failed; workers poll until it is back"
                );
            }
        }
        // Anything announced while we were not listening is lost: let the waiters look.
        available.notify_waiters();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// One `LISTEN` session: returns `Ok` after a lost connection that could not be
/// re-established at once, `Err` when connecting or listening failed.
async fn listen_once(
    pool: &PgPool,
    channel: &str,
    available: &Notify,
) -> std::result::Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    tracing::debug!(channel, "listening for iterjob notifications");
    available.notify_waiters();
    loop {
        match listener.try_recv().await? {
            Some(notification) => {
                if is_ours(notification.payload()) {
                    available.notify_waiters();
                } else {
                    tracing::debug!(
                        channel,
                        payload = notification.payload(),
                        "ignoring a notification that is not iterjob's"
                    );
                }
            }
            None => {
                // reconnected (eagerly) after a lost connection
                tracing::info!(
                    channel,
                    "iterjob LISTEN connection was lost and re-established"
                );
                available.notify_waiters();
            }
        }
    }
}

/// The payload of iterjob's notifications.
#[derive(Deserialize)]
struct Payload {
    iterjob: u32,
    event: String,
}

/// True for a payload iterjob sent: `{"iterjob": 1, "event": "available", …}`.
fn is_ours(payload: &str) -> bool {
    matches!(
        serde_json::from_str::<Payload>(payload),
        Ok(p) if p.iterjob == 1 && p.event == "available"
    )
}

/// Ends an admin transaction that changes nothing (or failed) at once, releasing
/// the job's row lock now rather than when the connection is next used.
async fn rollback<T>(
    tx: Transaction<'static, Postgres>,
    result: impl Into<RollbackResult<T>>,
) -> Result<T> {
    let _ = tx.rollback().await;
    result.into().0
}

/// What [`rollback`] returns: an error, or a result.
struct RollbackResult<T>(Result<T>);

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

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json_text(value: &Value, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialize { what, source })
}

fn control(row: &PgRow) -> Result<Control> {
    let flag = |col: &str| {
        row.try_get::<bool, _>(col)
            .map_err(|e| Error::Corrupt(format!("column `{col}`: {e}")))
    };
    Ok(Control {
        pause_requested: flag("pause_requested")?,
        cancel_requested: flag("cancel_requested")?,
        split_requested: flag("split_requested")?,
    })
}

/// Decodes one `jobs` row; the error says which column is wrong.
fn record_from_row(row: &PgRow) -> std::result::Result<JobRecord, String> {
    fn col<'r, T>(row: &'r PgRow, name: &str) -> std::result::Result<T, String>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        row.try_get(name)
            .map_err(|e| format!("cannot read column `{name}` of jobs: {e}"))
    }
    fn count<T: TryFrom<i64>>(row: &PgRow, name: &str) -> std::result::Result<T, String> {
        let v: i64 = col(row, name)?;
        T::try_from(v).map_err(|_| format!("column `{name}` of jobs holds {v}, out of range"))
    }

    let id: JobId = col(row, "id")?;
    let state: String = col(row, "state")?;
    let state = JobState::from_str(&state)
        .map_err(|_| format!("job {id} has an unknown state `{state}`"))?;
    let items_total: Option<i64> = col(row, "items_total")?;
    Ok(JobRecord {
        id,
        kind: col(row, "kind")?,
        queue: col(row, "queue")?,
        priority: col(row, "priority")?,
        state,
        params: col(row, "params")?,
        cursor: col(row, "cursor")?,
        items_done: count(row, "items_done")?,
        items_total: items_total
            .map(|t| u64::try_from(t).map_err(|_| format!("job {id}: items_total is {t}")))
            .transpose()?,
        attempts: count(row, "attempts")?,
        max_attempts: count(row, "max_attempts")?,
        interruptions: count(row, "interruptions")?,
        crashes: count(row, "crashes")?,
        runs: count(row, "runs")?,
        last_error: col(row, "last_error")?,
        unique_key: col(row, "unique_key")?,
        created_at: col(row, "created_at")?,
        run_at: col(row, "run_at")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
        checkpointed_at: col(row, "checkpointed_at")?,
        running_ms: count(row, "running_ms")?,
        worker_id: col(row, "worker_id")?,
        lease_expires_at: col(row, "lease_expires_at")?,
        pause_requested: col(row, "pause_requested")?,
        cancel_requested: col(row, "cancel_requested")?,
        parent_id: col(row, "parent_id")?,
        partitions: col::<Option<i32>>(row, "partitions")?
            .map(|n| u32::try_from(n).map_err(|_| format!("job {id}: partitions is {n}")))
            .transpose()?,
        split_requested: col(row, "split_requested")?,
    })
}

fn invalid(record: &JobRecord, action: &'static str, hint: &'static str) -> Error {
    Error::InvalidTransition {
        job: record.id,
        state: record.state,
        action,
        hint,
    }
}

/// How a release changes the row (the parameters of `job_release.sql` after progress).
struct ReleaseChange<'a> {
    state: JobState,
    run_at: Option<Millis>,
    attempts: i64,
    interruptions: i64,
    error: Option<&'a str>,
    finished: bool,
    clear_requests: bool,
}

impl<'a> ReleaseChange<'a> {
    fn of(outcome: &'a Outcome) -> Self {
        let base = |state| ReleaseChange {
            state,
            run_at: None,
            attempts: 0,
            interruptions: 0,
            error: None,
            finished: state.is_finished(),
            clear_requests: true,
        };
        match outcome {
            Outcome::Completed => base(JobState::Completed),
            Outcome::Interrupted { run_at, .. } => ReleaseChange {
                run_at: Some(*run_at),
                interruptions: 1,
                clear_requests: false,
                ..base(JobState::Queued)
            },
            Outcome::Paused => base(JobState::Paused),
            Outcome::Cancelled => base(JobState::Cancelled),
            Outcome::Retry { error, run_at } => ReleaseChange {
                run_at: Some(*run_at),
                attempts: 1,
                error: Some(error),
                clear_requests: false,
                ..base(JobState::Retrying)
            },
            Outcome::Failed { error } => ReleaseChange {
                attempts: 1,
                error: Some(error),
                ..base(JobState::Failed)
            },
        }
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool, &self.inner.target).await
    }

    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin("enqueueing jobs").await?;
        let mut ids = Vec::with_capacity(jobs.len());
        let mut rest = jobs;
        while let Some(first) = rest.first() {
            if let Some(key) = &first.unique_key {
                ids.push(self.insert_unique(&mut tx, first, key).await?);
                rest = &rest[1..];
                continue;
            }
            let run = rest
                .iter()
                .take(INSERT_CHUNK)
                .take_while(|job| job.unique_key.is_none())
                .count();
            ids.extend(self.insert_plain(&mut tx, &rest[..run]).await?);
            rest = &rest[run..];
        }
        // announce the queues with jobs claimable now (scheduled ones are found by
        // polling when their time comes)
        let now = now_millis();
        let queues: Vec<String> = jobs
            .iter()
            .filter(|job| job.run_at.is_none_or(|at| at <= now))
            .map(|job| job.queue.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.announce(&mut tx, &queues).await?;
        tx.commit().await.map_err(self.err("enqueueing jobs"))?;
        if jobs.len() >= ANALYZE_AFTER_INSERTING {
            // Measured: claims on 20,000 fresh one-item jobs ran 3.3x faster with
            // statistics than without (the planner sorted every waiting job).
            if let Err(error) = sqlx::query(&self.q().analyze).execute(self.pool()).await {
                tracing::debug!(%error, "ANALYZE after a large enqueue failed; claims may be slower until autovacuum");
            }
        }
        if !queues.is_empty() {
            self.wake_local();
        }
        Ok(ids)
    }

    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if request.limit == 0 || request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: Vec<i64> = (0..request.limit.min(MAX_CLAIM))
            .map(|_| RunToken::random().0)
            .collect();
        let sql = self
            .q()
            .claim
            .replace("{claim_limit}", &claim_limit(tokens.len()).to_string());
        let mut hot = self.hot("claiming jobs").await?;
        let rows = sqlx::query(&sql)
            .bind(&request.worker_id)
            .bind(duration_millis(request.lease))
            .bind(&request.queues)
            .bind(&request.kinds)
            .bind(&tokens)
            .fetch_all(hot.conn())
            .await
            .map_err(self.err("claiming jobs"))?;
        hot.keep();
        let mut claimed = rows
            .iter()
            .map(|row| {
                let token: i64 = row
                    .try_get("run_token")
                    .map_err(|e| Error::Corrupt(format!("claimed job without a token: {e}")))?;
                Ok(Claimed {
                    job: self.record(row)?,
                    token: RunToken(token),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING gives no order; hand jobs out in claim order
        claimed.sort_by(|a, b| {
            (b.job.priority.cmp(&a.job.priority))
                .then(a.job.run_at.cmp(&b.job.run_at))
                .then(a.job.id.cmp(&b.job.id))
        });
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        let mut hot = self.hot("extending a lease").await?;
        let row = sqlx::query(&self.q().heartbeat)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .fetch_optional(hot.conn())
            .await
            .map_err(self.err("extending a lease"))?;
        hot.keep();
        match row {
            Some(row) => control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }

    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control> {
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let mut hot = self.hot("writing a checkpoint").await?;
        let row = sqlx::query(&self.q().checkpoint)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .fetch_optional(hot.conn())
            .await
            .map_err(self.err("writing a checkpoint"))?;
        hot.keep();
        match row {
            Some(row) => control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }

    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()> {
        let cursor = progress
            .and_then(|p| p.cursor.as_ref())
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let change = ReleaseChange::of(outcome);
        // Completion writes no event: one statement on the pool, as it always was.
        // Any other outcome records its event in the same transaction.
        let event = release_event(outcome);
        let mut tx = match event {
            Some(_) => Some(self.begin("releasing a job").await?),
            None => None,
        };
        let release = sqlx::query(&self.q().release)
            .bind(id)
            .bind(token.0)
            .bind(progress.is_some())
            .bind(cursor)
            .bind(progress.map(|p| to_i64(p.items_done)))
            .bind(progress.and_then(|p| p.items_total).map(to_i64))
            .bind(progress.map(|p| to_i64(p.running_ms)))
            .bind(change.state.as_str())
            .bind(change.run_at)
            .bind(change.attempts)
            .bind(change.interruptions)
            .bind(change.error)
            .bind(change.finished)
            .bind(change.clear_requests)
            .bind(self.channel_param());
        let row = match tx.as_mut() {
            Some(tx) => release.fetch_optional(&mut **tx).await,
            None => {
                let mut hot = self.hot("releasing a job").await?;
                let row = release.fetch_optional(hot.conn()).await;
                if row.is_ok() {
                    hot.keep();
                }
                row
            }
        }
        .map_err(self.err("releasing a job"))?;
        let Some(row) = row else {
            if let Some(tx) = tx {
                let _ = tx.rollback().await;
            }
            return Err(self.fence_failed(id).await);
        };
        let parent: Option<JobId> = row
            .try_get("parent_id")
            .map_err(self.err("releasing a job"))?;
        if let (Some(mut tx), Some((kind, reason, error))) = (tx, event) {
            events::insert(&mut *tx, self.schema(), &[id], kind, reason, error)
                .await
                .map_err(self.err("recording a release in the job's history"))?;
            tx.commit().await.map_err(self.err("releasing a job"))?;
        }
        if let Some(parent) = parent
            && change.state.is_finished()
        {
            // The release is committed (finishing the parent reads it); if this
            // fails, the rescuer finishes the parent later.
            self.finalize_now(parent).await?;
        }
        if change.state == JobState::Queued && change.run_at.is_none_or(|at| at <= now_millis()) {
            self.wake_local();
        }
        Ok(())
    }

    async fn job_release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        self.release_many(releases).await
    }

    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        let mut tx = self.begin("rescuing jobs with expired leases").await?;
        let rows = sqlx::query(&self.q().rescue)
            .bind(i64::from(max_crashes))
            .bind(self.channel_param())
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<JobId, _>("id"))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err("rescuing jobs"))?;
        events::insert(
            &mut *tx,
            self.schema(),
            &ids,
            JobEventKind::Rescued,
            None,
            None,
        )
        .await
        .map_err(self.err("recording rescues in the jobs' history"))?;
        tx.commit()
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let mut rescued = rows
            .iter()
            .map(|row| {
                let id: JobId = row.try_get("id").map_err(self.err("rescuing jobs"))?;
                let state: String = row.try_get("state").map_err(self.err("rescuing jobs"))?;
                let state = JobState::from_str(&state).map_err(|_| {
                    Error::Corrupt(format!("job {id} has an unknown state `{state}`"))
                })?;
                Ok(Rescued { id, state })
            })
            .collect::<Result<Vec<_>>>()?;
        rescued.sort_by_key(|r| r.id);
        for r in &rescued {
            tracing::debug!(job = r.id, state = %r.state, "rescued a job whose lease expired");
        }
        if rescued.iter().any(|r| r.state == JobState::Queued) {
            self.wake_local();
        }
        let parents: Vec<JobId> = sqlx::query_scalar(&self.q().finalize_candidates)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("looking for finished partitioned jobs"))?;
        for parent in parents {
            self.finalize_now(parent).await?;
        }
        Ok(rescued)
    }

    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&self.q().get)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading a job"))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.with_progress(self.record(&row)?).await?)),
        }
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let rows = sqlx::query(&self.q().list)
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.before_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(filter.top_level)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing jobs"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(self.with_progress(self.record(row)?).await?);
        }
        Ok(records)
    }

    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.q().count)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting jobs"))?;
        let mut counts: Vec<(JobState, u64)> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for (state, n) in rows {
            let state = JobState::from_str(&state).map_err(|_| {
                Error::Corrupt(format!(
                    "PostgreSQL store {}: jobs with an unknown state `{state}`",
                    self.inner.target
                ))
            })?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("pausing a job").await?;
        let record = match self.get_locked(&mut tx, id).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        if !record.state.is_finished() {
            match self.is_split_parent(&mut tx, &record).await {
                Ok(true) => {
                    return self
                        .cascade(
                            tx,
                            id,
                            JobState::Paused,
                            &self.q().pause_children,
                            "pausing a job",
                        )
                        .await;
                }
                Ok(false) => {}
                Err(err) => return rollback(tx, err).await,
            }
        }
        match record.state {
            JobState::Queued | JobState::Retrying | JobState::Running => {}
            JobState::Paused => return rollback(tx, Ok(record)).await,
            JobState::Completed | JobState::Failed | JobState::Cancelled => {
                return rollback(tx, invalid(&record, "pause", "it already finished")).await;
            }
        }
        self.admin_update(
            tx,
            &self.q().pause,
            id,
            JobEventKind::OperatorPause,
            self.err("pausing a job"),
        )
        .await
    }

    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("resuming a job").await?;
        let record = match self.get_locked(&mut tx, id).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        if record.state == JobState::Paused {
            match self.is_split_parent(&mut tx, &record).await {
                Ok(true) => {
                    return self
                        .cascade(
                            tx,
                            id,
                            JobState::Running,
                            &self.q().resume_children,
                            "resuming a job",
                        )
                        .await;
                }
                Ok(false) => {}
                Err(err) => return rollback(tx, err).await,
            }
        }
        match record.state {
            JobState::Paused => {}
            JobState::Running if record.pause_requested => {}
            JobState::Running => {
                return rollback(
                    tx,
                    invalid(
                        &record,
                        "resume",
                        "it is running and no pause is pending; only paused jobs can be resumed",
                    ),
                )
                .await;
            }
            JobState::Failed | JobState::Cancelled => {
                return rollback(tx, invalid(
                    &record,
                    "resume",
                    "only paused jobs can be resumed; use retry to run a failed or cancelled job again",
                )).await;
            }
            JobState::Queued | JobState::Retrying | JobState::Completed => {
                return rollback(
                    tx,
                    invalid(&record, "resume", "only paused jobs can be resumed"),
                )
                .await;
            }
        }
        self.admin_update(
            tx,
            &self.q().resume,
            id,
            JobEventKind::OperatorResume,
            self.err("resuming a job"),
        )
        .await
    }

    async fn job_cancel(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("cancelling a job").await?;
        let record = match self.get_locked(&mut tx, id).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        if record.state.is_finished() {
            return rollback(tx, invalid(&record, "cancel", "it already finished")).await;
        }
        match self.is_split_parent(&mut tx, &record).await {
            Ok(true) => {
                return self
                    .cascade(
                        tx,
                        id,
                        JobState::Cancelled,
                        &self.q().cancel_children,
                        "cancelling a job",
                    )
                    .await;
            }
            Ok(false) => {}
            Err(err) => return rollback(tx, err).await,
        }
        let finishes_partition = record
            .parent_id
            .filter(|_| record.state != JobState::Running);
        let cancelled = self
            .admin_update(
                tx,
                &self.q().cancel,
                id,
                JobEventKind::OperatorCancel,
                self.err("cancelling a job"),
            )
            .await?;
        if let Some(parent) = finishes_partition {
            // a waiting partition finished now: its parent may be done
            self.finalize_now(parent).await?;
        }
        Ok(cancelled)
    }

    async fn job_wait_available(&self) {
        // registered before the listener starts, so no wake-up in between is missed
        let notified = self.inner.available.notified();
        self.ensure_listener();
        notified.await;
    }

    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        let mut tx = self.begin("retrying a job").await?;
        let record = match self.get_locked(&mut tx, id).await {
            Ok(record) => record,
            Err(err) => return rollback(tx, err).await,
        };
        if !matches!(record.state, JobState::Failed | JobState::Cancelled) {
            return rollback(
                tx,
                invalid(
                    &record,
                    "retry",
                    "only failed or cancelled jobs can be retried",
                ),
            )
            .await;
        }
        match self.is_split_parent(&mut tx, &record).await {
            Ok(true) => {
                let retried = self
                    .cascade(
                        tx,
                        id,
                        JobState::Running,
                        &self.q().retry_children,
                        "retrying a job",
                    )
                    .await?;
                // every partition may have completed already (a parent cancelled late)
                self.finalize_now(id).await?;
                return Ok(self.job_get(id).await?.unwrap_or(retried));
            }
            Ok(false) => {}
            Err(err) => return rollback(tx, err).await,
        }
        let on_error = |err: sqlx::Error| {
            if is_unique_violation(&err) {
                invalid(
                    &record,
                    "retry",
                    "another unfinished job holds its unique key; cancel that one first",
                )
            } else {
                map_sqlx(&self.inner.target, "retrying a job", err)
            }
        };
        self.admin_update(
            tx,
            &self.q().retry,
            id,
            JobEventKind::OperatorRetry,
            on_error,
        )
        .await
    }

    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        let rows = events::list(&self.pool, self.schema(), id, limit)
            .await
            .map_err(self.err("reading a job's history"))?;
        rows.iter()
            .map(|row| {
                events::from_row(row).map_err(|e| {
                    Error::Corrupt(format!("PostgreSQL store {}: {e}", self.inner.target))
                })
            })
            .collect()
    }

    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>> {
        let params = children
            .iter()
            .map(|p| json_text(p, "partition parameters"))
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.begin("splitting a job into partitions").await?;
        let planned = sqlx::query(&self.q().partition)
            .bind(id)
            .bind(token.0)
            .bind(i64::try_from(children.len()).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await;
        match planned {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = tx.rollback().await;
                return Err(match self.job_get(id).await? {
                    Some(record) if record.partitions.is_none() => Error::Config(format!(
                        "job {id} was not enqueued as a partitioned job; it cannot be split into partitions"
                    )),
                    _ => self.fence_failed(id).await,
                });
            }
            Err(err) => {
                let err = map_sqlx(&self.inner.target, "splitting a job into partitions", err);
                return rollback(tx, err).await;
            }
        }
        let mut ids = Vec::with_capacity(children.len());
        let mut queues = BTreeSet::new();
        for params in &params {
            let row = match sqlx::query(&self.q().insert_partition)
                .bind(id)
                .bind(params)
                .fetch_one(&mut *tx)
                .await
            {
                Ok(row) => row,
                Err(err) => {
                    let err = map_sqlx(&self.inner.target, "enqueueing a partition", err);
                    return rollback(tx, err).await;
                }
            };
            ids.push(
                row.try_get::<JobId, _>("id")
                    .map_err(self.err("enqueueing a partition"))?,
            );
            if row
                .try_get::<String, _>("state")
                .map_err(self.err("enqueueing a partition"))?
                == "queued"
            {
                queues.insert(
                    row.try_get::<String, _>("queue")
                        .map_err(self.err("enqueueing a partition"))?,
                );
            }
        }
        let queues: Vec<String> = queues.into_iter().collect();
        self.announce(&mut tx, &queues).await?;
        tx.commit()
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        if !queues.is_empty() {
            self.wake_local();
        }
        Ok(ids)
    }

    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let keep = split
            .map(|s| json_text(&s.keep, "partition parameters"))
            .transpose()?;
        let give = split
            .map(|s| json_text(&s.give, "partition parameters"))
            .transpose()?;
        let mut tx = self.begin("splitting a partition").await?;
        if split.is_some() {
            // lock the parent before the partition, in the order the parent's admin
            // actions take them
            let parent: Option<Option<JobId>> = match sqlx::query_scalar(&self.q().parent_of)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
            {
                Ok(parent) => parent,
                Err(err) => {
                    return rollback(
                        tx,
                        Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                    )
                    .await;
                }
            };
            match parent {
                None => return rollback(tx, Error::JobNotFound(id)).await,
                Some(None) => {
                    return rollback(
                        tx,
                        Error::Config(format!(
                            "job {id} is not a partition of a partitioned job; only partitions can be split"
                        )),
                    )
                    .await;
                }
                Some(Some(parent)) => {
                    if let Err(err) = sqlx::query(&self.q().lock_parent)
                        .bind(parent)
                        .execute(&mut *tx)
                        .await
                    {
                        return rollback(
                            tx,
                            Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                        )
                        .await;
                    }
                }
            }
        }
        let row = match sqlx::query(&self.q().split)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .bind(keep)
            .fetch_optional(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => {
                return rollback(
                    tx,
                    Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                )
                .await;
            }
        };
        let Some(row) = row else {
            let _ = tx.rollback().await;
            return Err(self.fence_failed(id).await);
        };
        let (Some(give), Some(parent)) = (
            give,
            row.try_get::<Option<JobId>, _>("parent_id")
                .map_err(self.err("splitting a partition"))?,
        ) else {
            tx.commit()
                .await
                .map_err(self.err("writing a checkpoint"))?;
            return Ok(None);
        };
        let inserted = match sqlx::query(&self.q().insert_partition)
            .bind(parent)
            .bind(give)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => {
                return rollback(
                    tx,
                    Err(map_sqlx(&self.inner.target, "enqueueing a partition", err)),
                )
                .await;
            }
        };
        let new: JobId = inserted
            .try_get("id")
            .map_err(self.err("enqueueing a partition"))?;
        let claimable = inserted
            .try_get::<String, _>("state")
            .map_err(self.err("enqueueing a partition"))?
            == "queued";
        if claimable {
            let queue: String = inserted
                .try_get("queue")
                .map_err(self.err("enqueueing a partition"))?;
            self.announce(&mut tx, &[queue]).await?;
        }
        tx.commit()
            .await
            .map_err(self.err("splitting a partition"))?;
        if claimable {
            self.wake_local();
        }
        Ok(Some(new))
    }

    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        if request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(None);
        }
        sqlx::query_scalar(&self.q().request_split)
            .bind(&request.queues)
            .bind(&request.kinds)
            .bind(to_i64(request.min_remaining.max(2)))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("asking a partition to split"))
    }

    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&self.q().partitions)
            .bind(parent)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing a job's partitions"))?;
        rows.iter().map(|row| self.record(row)).collect()
    }

    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        let wait_us: i64 = sqlx::query_scalar(&self.q().rate_acquire)
            .bind(key)
            .bind(rate_cost_micros(n, interval))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_limits_are_exact_then_powers_of_two() {
        assert_eq!(claim_limit(1), 1);
        assert_eq!(claim_limit(12), 12);
        assert_eq!(claim_limit(32), 32);
        assert_eq!(claim_limit(33), 64);
        assert_eq!(claim_limit(64), 64);
        assert_eq!(claim_limit(65), 128);
        assert_eq!(claim_limit(MAX_CLAIM), 16_384);
    }

    #[test]
    fn payloads_are_recognized() {
        assert!(is_ours(
            r#"{"iterjob" : 1, "event" : "available", "queue" : "default"}"#
        ));
        for foreign in [
            "",
            "hello",
            "{}",
            "[1]",
            r#"{"iterjob": 2, "event": "available"}"#,
            r#"{"iterjob": 1, "event": "other"}"#,
            r#"{"iterjob": "1", "event": "available"}"#,
        ] {
            assert!(!is_ours(foreign), "{foreign}");
        }
    }

    #[test]
    fn urls_resolve_schema_and_hide_passwords() {
        let (options, schema) = PgOptions::new("postgres://u:secret@h:5433/db?schema=s1")
            .resolve()
            .unwrap();
        assert_eq!(schema, "s1");
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_database(), Some("db"));
        let (_, schema) = PgOptions::new("postgres://u@h/db?sslmode=disable&schema=s2")
            .resolve()
            .unwrap();
        assert_eq!(schema, "s2");
        let (_, schema) = PgOptions::new("postgresql://u@h/db").resolve().unwrap();
        assert_eq!(schema, DEFAULT_SCHEMA);
        let err = PgOptions::new("postgres://u@h/db?schema=a")
            .schema("b")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("names schema `a`"), "{err}");
        let err = PgOptions::new("postgres://u@h/db?schema=bad-name")
            .resolve()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = PgOptions::new("mysql://u:secret@h/db")
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = PgOptions::new("").resolve().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
