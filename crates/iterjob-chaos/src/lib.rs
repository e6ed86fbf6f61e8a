//! # iterjob-chaos
//!
//! Chaos and outage tests for iterjob on PostgreSQL and MySQL/MariaDB, with real
//! worker processes.
//!
//! The crate builds the binary `iterjob-chaos`: the whole iterjob command line
//! ([`iterjob_cli::App`]) with two job kinds that log every item they process into a
//! table, so a test can count afterwards which items ran, how often, and under which
//! run:
//!
//! * [`ChaosItems`] (`chaos_items`, **at least once**): walks `0..n` in batches of
//!   `batch`; for each batch sleeps `pause_ms`, then inserts one row per item into
//!   [`LOG_TABLE`] on its own (autocommit). The cursor is left to the runtime's
//!   periodic checkpoints, so a worker killed with SIGKILL between two checkpoints
//!   makes the next run repeat the batches since the last one.
//! * [`ChaosTxItems`] (`chaos_tx_items`, **exactly once**): the same walk, through
//!   the store's `Transactional` adapter ([`iterjob_postgres::Transactional`] or
//!   [`iterjob_mysql::Transactional`]): each batch's rows and the cursor past the
//!   batch commit in one transaction (the pause is spent inside it, so kills land
//!   mid-transaction too). No item may ever be logged twice.
//!
//! Parameters of both: `{"n": 10000, "batch": 50, "pause_ms": 100}` ([`ChaosParams`]).
//! Both can be partitioned (`enqueue --partitions 4`): each partition walks an equal
//! integer range of `0..n` and logs under its own job id, and idle workers split the
//! partitions that have the most left.
//!
//! The database is the one the binary was given, the usual way (`--database-url` or
//! `ITERJOB_DATABASE_URL`: a `postgres://` URL, with `?schema=NAME` for a schema of
//! its own, or a `mysql://` URL); a job may name another in its parameters
//! (`database_url`). The log table lives next to the store's tables (in its schema
//! on PostgreSQL, its database on MySQL); create it with
//! [`LogDb::create_log_table`] before the workers start. Each kind keeps one
//! [`LogDb`] per URL (a small pool of its own, [`KIND_POOL_SIZE`] connections; no
//! `LISTEN` on PostgreSQL).
//!
//! ```text
//! iterjob-chaos --database-url 'postgres://postgres@127.0.0.1/test?schema=chaos' \
//!     worker --concurrency 4 --lease 2s --heartbeat-interval 500ms
//! iterjob-chaos enqueue chaos_tx_items --params '{"n": 10000, "batch": 50, "pause_ms": 100}'
//! ```
//!
//! # The tests
//!
//! They need the PostgreSQL server of `ITERJOB_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and, for MySQL, the server of
//! `ITERJOB_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`). When one
//! cannot be reached its tests **fail if the environment variable `CI` is set**, and
//! otherwise print a notice and skip. Each works in a fresh schema (PostgreSQL) or
//! database (MySQL) with a random name, dropped at the end.
//!
//! * `tests/chaos.rs` (part of the normal test run, about 1.5 minutes per
//!   database; PostgreSQL, then MySQL): 50 jobs of
//!   10,000 items (half of each kind), 4 worker processes (`--concurrency 4 --lease
//!   2s --heartbeat-interval 500ms --checkpoint-interval 1s`); for 60 s a random
//!   worker is killed every 1–4 s, with SIGKILL or SIGTERM at random, and restarted.
//!   Then every job must complete, every item of every job be logged, `chaos_tx_items`
//!   have no repeat, and `chaos_items` repeat only after SIGKILLs, at most
//!   `concurrency × items per checkpoint interval` (plus a margin) per SIGKILL, and
//!   never because of a SIGTERM. It prints kills by signal, runtime, items logged per
//!   kind and repeats (`cargo test -p iterjob-chaos --test chaos -- --nocapture`).
//! * `tests/outage.rs`: the PostgreSQL server is stopped for 3 s and started again,
//!   then restarted, while 2 worker processes walk a few jobs of each kind. The
//!   workers must ride it out and every job complete with nothing lost and, for the
//!   transactional kind, nothing repeated. It runs `pg_ctlcluster` (as root, the
//!   cluster `main` of the one version in `/etc/postgresql`) and makes sure the server
//!   is running again at the end, even if the test fails. It is its own test binary
//!   so that nothing else of this crate runs while the server is down (cargo runs
//!   test binaries one after another).
//!
//! # Shared rate limits
//!
//! The crate also builds `iterjob-pace`: the command line with one kind,
//! [`pace::PacedItems`] (`paced_items`), limited to `ITERJOB_PACE_RATE` items per
//! second (default 100) over every worker process on the database, SQLite or
//! PostgreSQL. It appends a timestamp per batch to a log file per process.
//! `tests/pace.rs` starts 3 worker processes on one PostgreSQL schema, and 3 on one
//! SQLite file, and checks from those timestamps that together they stay within 10 %
//! of the limit (and that each process did its share). It prints the rates it
//! measured (`cargo test -p iterjob-chaos --test pace -- --nocapture`).
//!
//! # Soak mode
//!
//! The chaos test takes its sizes from the environment, so the same test can run for
//! hours:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ITERJOB_CHAOS_SECS` | 60 | length of the chaos phase, in seconds (at least 60 in CI) |
//! | `ITERJOB_CHAOS_JOBS` | 50 | jobs enqueued, half of each kind |
//! | `ITERJOB_CHAOS_ITEMS` | 10000 | items per job |
//!
//! Scale the jobs (or items) with the seconds, or the workers run out of work and the
//! rest of the chaos phase kills idle workers: with the default pacing (batches of
//! 50 items, 100 ms each, 16 jobs at a time) one job lasts about 20 s, so about
//! `SECS / 1.3` jobs keep the workers busy. For example:
//!
//! ```text
//! ITERJOB_CHAOS_SECS=1800 ITERJOB_CHAOS_JOBS=1400 \
//!     cargo test --release -p iterjob-chaos --test chaos -- --nocapture
//! ```

pub mod pace;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::partition::{int_ranges, split_int_range};
use iterjob::store::JobId;
use iterjob::{Job, JobContext, JobError, Store};
use iterjob_mysql::{MySqlOptions, MySqlStore};
use iterjob_postgres::{PgOptions, PgStore};
use serde::{Deserialize, Serialize};
use sqlx::{MySql, MySqlExecutor, PgExecutor, Postgres, Transaction};

/// The log table's name, in the store's schema (PostgreSQL) or database (MySQL): one
/// row per item processed.
pub const LOG_TABLE: &str = "chaos_log";

/// Connections in the pool each kind keeps per database URL for its log writes.
pub const KIND_POOL_SIZE: u32 = 6;

/// The environment variable the command line reads the database URL from.
pub const DATABASE_URL_ENV: &str = "ITERJOB_DATABASE_URL";

/// The database the chaos kinds log to: iterjob's store on one URL, whose pool also
/// writes the log table next to the store's tables.
#[derive(Clone, Debug)]
pub enum LogDb {
    /// A PostgreSQL store (the log table in its schema).
    Postgres(PgStore),
    /// A MySQL or MariaDB store (the log table in its database).
    MySql(MySqlStore),
}

/// One row of the log table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRow {
    /// Insertion order.
    pub id: i64,
    /// The job (or partition) that logged it.
    pub job_id: i64,
    /// The item.
    pub item: i64,
    /// The run that logged it.
    pub run_token: i64,
    /// The worker process that logged it.
    pub worker_pid: i32,
}

impl LogDb {
    /// Opens (and migrates) the store `url` names, with a pool of `max_connections`:
    /// `postgres://…` (with `?schema=NAME` for a schema of its own; no `LISTEN`
    /// connection) or `mysql://…` / `mariadb://…`.
    ///
    /// # Errors
    /// [`iterjob::Error::Config`] for another kind of URL, else as the store's
    /// `connect_with`.
    pub async fn connect(url: &str, max_connections: u32) -> iterjob::Result<LogDb> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgOptions::new(url)
                .max_connections(max_connections)
                .notify(false);
            Ok(LogDb::Postgres(PgStore::connect_with(options).await?))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = MySqlOptions::new(url).max_connections(max_connections);
            Ok(LogDb::MySql(MySqlStore::connect_with(options).await?))
        } else {
            Err(iterjob::Error::Config(format!(
                "the chaos kinds log to PostgreSQL (postgres://…) or MySQL/MariaDB                  (mysql://…), not `{url}`"
            )))
        }
    }

    /// The store, for the runtime and for reading jobs back.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            LogDb::Postgres(store) => Arc::new(store.clone()),
            LogDb::MySql(store) => Arc::new(store.clone()),
        }
    }

    /// The database's name for messages: `PostgreSQL` or `MySQL`.
    pub fn name(&self) -> &'static str {
        match self {
            LogDb::Postgres(_) => "PostgreSQL",
            LogDb::MySql(_) => "MySQL",
        }
    }

    /// The log table, qualified as statements name it.
    fn table(&self) -> String {
        match self {
            LogDb::Postgres(store) => format!("\"{}\".{LOG_TABLE}", store.schema()),
            LogDb::MySql(_) => format!("`{LOG_TABLE}`"),
        }
    }

    /// Creates the log table if it is missing: `id` (insertion order), `job_id`,
    /// `item`, `run_token` (the run that logged the row), `worker_pid` (the worker
    /// process) and `logged_at` (the server's clock).
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn create_log_table(&self) -> Result<(), sqlx::Error> {
        let table = self.table();
        match self {
            LogDb::Postgres(store) => {
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (
                        id          BIGSERIAL   PRIMARY KEY,
                        job_id      BIGINT      NOT NULL,
                        item        BIGINT      NOT NULL,
                        run_token   BIGINT      NOT NULL,
                        worker_pid  INTEGER     NOT NULL,
                        logged_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
                    )"
                ))
                .execute(store.pool())
                .await?;
            }
            LogDb::MySql(store) => {
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} (
                        id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
                        job_id      BIGINT       NOT NULL,
                        item        BIGINT       NOT NULL,
                        run_token   BIGINT       NOT NULL,
                        worker_pid  INT          NOT NULL,
                        logged_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                    ) ENGINE = InnoDB"
                ))
                .execute(store.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// Logs `batch` in one autocommitted insert.
    async fn log(&self, entry: &Entry<'_>) -> Result<(), sqlx::Error> {
        match self {
            LogDb::Postgres(store) => insert_pg(store.pool(), &self.table(), entry).await,
            LogDb::MySql(store) => insert_mysql(store.pool(), &self.table(), entry).await,
        }
    }

    /// Every row of the log table, in insertion order.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn log_rows(&self) -> Result<Vec<LogRow>, sqlx::Error> {
        let sql = format!(
            "SELECT id, job_id, item, run_token, worker_pid FROM {} ORDER BY id",
            self.table()
        );
        let rows: Vec<(i64, i64, i64, i64, i32)> = match self {
            LogDb::Postgres(store) => sqlx::query_as(&sql).fetch_all(store.pool()).await?,
            LogDb::MySql(store) => sqlx::query_as(&sql).fetch_all(store.pool()).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(id, job_id, item, run_token, worker_pid)| LogRow {
                id,
                job_id,
                item,
                run_token,
                worker_pid,
            })
            .collect())
    }
}

/// What one batch logs.
struct Entry<'a> {
    job_id: JobId,
    items: &'a [i64],
    run_token: i64,
    pid: i32,
}

impl<'a> Entry<'a> {
    fn of(ctx: &JobContext<ChaosParams>, items: &'a [i64]) -> Self {
        Entry {
            job_id: ctx.job_id,
            items,
            run_token: ctx.run_token.0,
            pid: pid(),
        }
    }
}

/// Inserts a batch's rows on PostgreSQL: one statement, the items as an array.
async fn insert_pg<'c>(
    exec: impl PgExecutor<'c>,
    table: &str,
    entry: &Entry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (job_id, item, run_token, worker_pid) \
         SELECT $1, unnest($2::bigint[]), $3, $4"
    ))
    .bind(entry.job_id)
    .bind(entry.items)
    .bind(entry.run_token)
    .bind(entry.pid)
    .execute(exec)
    .await?;
    Ok(())
}

/// Inserts a batch's rows on MySQL: one statement, a row of values per item.
async fn insert_mysql<'c>(
    exec: impl MySqlExecutor<'c>,
    table: &str,
    entry: &Entry<'_>,
) -> Result<(), sqlx::Error> {
    if entry.items.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?, ?, ?, ?)"; entry.items.len()].join(", ");
    let sql = format!("INSERT INTO {table} (job_id, item, run_token, worker_pid) VALUES {rows}");
    let mut query = sqlx::query(&sql);
    for item in entry.items {
        query = query
            .bind(entry.job_id)
            .bind(*item)
            .bind(entry.run_token)
            .bind(entry.pid);
    }
    query.execute(exec).await?;
    Ok(())
}

/// The database URL a command line names, as `iterjob_cli` reads it: the value of
/// `--database-url URL` or `--database-url=URL` among `args`, else the environment
/// variable [`DATABASE_URL_ENV`].
pub fn database_url_from_args(args: impl IntoIterator<Item = String>) -> Option<String> {
    let mut args = args.into_iter();
    let mut found = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--database-url" {
            found = args.next();
        } else if let Some(url) = arg.strip_prefix("--database-url=") {
            found = Some(url.to_string());
        }
    }
    found.or_else(|| std::env::var(DATABASE_URL_ENV).ok())
}

/// Parameters of [`ChaosItems`] and [`ChaosTxItems`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosParams {
    /// Items: `0..n`.
    pub n: i64,
    /// Items per batch (one insert, and for the transactional kind one transaction).
    pub batch: usize,
    /// Pause per batch, in milliseconds.
    pub pause_ms: u64,
    /// The database to log to, if not the one the binary was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// The items of one partition of a partitioned job (a part of `0..n`); the whole
    /// of `0..n` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range<i64>>,
}

impl ChaosParams {
    /// Checks the sizes; the error names the field.
    fn validate(&self) -> Result<(), JobError> {
        if self.n < 0 {
            return Err(JobError::fatal(format!(
                "n must not be negative, got {}",
                self.n
            )));
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err(JobError::fatal(format!(
                "batch must be in 1..=100000, got {}",
                self.batch
            )));
        }
        Ok(())
    }

    /// The items this job walks.
    fn items(&self) -> Range<i64> {
        self.range.clone().unwrap_or(0..self.n)
    }

    /// The items' batches after `cursor`.
    fn batches(&self, cursor: Option<i64>) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        self.validate()?;
        Ok(enumerator::range(self.items(), cursor).batched(self.batch))
    }

    /// The number of items, for progress.
    fn total(&self) -> Option<u64> {
        let items = self.items();
        u64::try_from(items.end - items.start).ok()
    }

    /// `n` partitions of the items, as equal integer ranges.
    fn partition(&self, n: u32) -> Vec<ChaosParams> {
        int_ranges(self.items(), n)
            .into_iter()
            .map(|range| self.with_range(range))
            .collect()
    }

    /// The rest after `cursor`, halved (dynamic splitting).
    fn split(&self, cursor: Option<&i64>) -> Option<(ChaosParams, ChaosParams)> {
        let (keep, give) = split_int_range(&self.items(), cursor.copied())?;
        Some((self.with_range(keep), self.with_range(give)))
    }

    fn with_range(&self, range: Range<i64>) -> ChaosParams {
        ChaosParams {
            range: Some(range),
            ..self.clone()
        }
    }
}

/// The databases a kind opened, one per URL.
#[derive(Debug, Default)]
struct Stores {
    /// The URL the binary was given.
    default_url: Option<String>,
    cache: Mutex<HashMap<String, LogDb>>,
}

impl Stores {
    fn new(default_url: Option<String>) -> Self {
        Stores {
            default_url,
            cache: Mutex::default(),
        }
    }

    fn url<'a>(&'a self, params: &'a ChaosParams) -> Result<&'a str, JobError> {
        params
            .database_url
            .as_deref()
            .or(self.default_url.as_deref())
            .ok_or_else(|| {
                JobError::fatal(
                    "no database URL: pass --database-url postgres://… or mysql://… (or set \
                     ITERJOB_DATABASE_URL), or name one in the parameters (database_url)",
                )
            })
    }

    fn cached(&self, url: &str) -> Option<LogDb> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned()
    }

    /// The database `url` names, opened on first use.
    async fn get(&self, url: &str) -> Result<LogDb, JobError> {
        if let Some(db) = self.cached(url) {
            return Ok(db);
        }
        let db = LogDb::connect(url, KIND_POOL_SIZE)
            .await
            .map_err(|err| match err {
                iterjob::Error::Config(_) => JobError::fatal(err),
                err => JobError::retryable(err),
            })?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache.entry(url.to_string()).or_insert(db).clone())
    }
}

fn pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

/// `chaos_items`: at-least-once. For each batch of `0..n`, sleeps `pause_ms`, then
/// logs the batch's items in one autocommitted insert; the cursor is checkpointed by
/// the runtime, so a crash between two checkpoints repeats items.
#[derive(Debug, Default)]
pub struct ChaosItems {
    stores: Stores,
}

impl ChaosItems {
    /// The kind, logging to `database_url` unless a job's parameters name another.
    pub fn new(database_url: Option<String>) -> Self {
        ChaosItems {
            stores: Stores::new(database_url),
        }
    }
}

impl Job for ChaosItems {
    const KIND: &'static str = "chaos_items";
    const PARTITIONABLE: bool = true;
    type Params = ChaosParams;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &ChaosParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        params.batches(cursor)
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    async fn total(&self, params: &ChaosParams) -> Result<Option<u64>, JobError> {
        Ok(params.total())
    }

    async fn partition(&self, params: &ChaosParams, n: u32) -> Result<Vec<ChaosParams>, JobError> {
        params.validate()?;
        Ok(params.partition(n))
    }

    async fn split(
        &self,
        params: &ChaosParams,
        cursor: Option<&i64>,
    ) -> Result<Option<(ChaosParams, ChaosParams)>, JobError> {
        Ok(params.split(cursor))
    }

    async fn process(
        &self,
        ctx: &JobContext<ChaosParams>,
        batch: Vec<i64>,
    ) -> Result<(), JobError> {
        let db = self.stores.get(self.stores.url(&ctx.params)?).await?;
        if ctx.params.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.pause_ms)).await;
        }
        db.log(&Entry::of(ctx, &batch)).await?;
        Ok(())
    }
}

/// The transactional adapter on one database.
#[derive(Debug)]
enum TxJob {
    Postgres(Arc<iterjob_postgres::Transactional<TxLog>>),
    MySql(Arc<iterjob_mysql::Transactional<TxLog>>),
}

impl TxJob {
    fn cloned(&self) -> TxJob {
        match self {
            TxJob::Postgres(job) => TxJob::Postgres(Arc::clone(job)),
            TxJob::MySql(job) => TxJob::MySql(Arc::clone(job)),
        }
    }
}

/// `chaos_tx_items`: exactly-once. As [`ChaosItems`], but each batch's pause and
/// insert run inside the transaction the store's `Transactional` adapter opens,
/// which also advances the cursor past the batch: a crash rolls both back, so no
/// item is logged twice.
#[derive(Debug, Default)]
pub struct ChaosTxItems {
    stores: Stores,
    jobs: Mutex<HashMap<String, TxJob>>,
}

impl ChaosTxItems {
    /// The kind, logging to `database_url` unless a job's parameters name another.
    pub fn new(database_url: Option<String>) -> Self {
        ChaosTxItems {
            stores: Stores::new(database_url),
            jobs: Mutex::default(),
        }
    }

    /// The transactional job on the database `url` names (its store must be the
    /// worker's: same database, and schema on PostgreSQL).
    async fn transactional(&self, url: &str) -> Result<TxJob, JobError> {
        if let Some(job) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(job.cloned());
        }
        let db = self.stores.get(url).await?;
        let log = TxLog { table: db.table() };
        let job = match db {
            LogDb::Postgres(store) => {
                TxJob::Postgres(Arc::new(iterjob_postgres::Transactional::new(log, store)))
            }
            LogDb::MySql(store) => {
                TxJob::MySql(Arc::new(iterjob_mysql::Transactional::new(log, store)))
            }
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(jobs.entry(url.to_string()).or_insert(job).cloned())
    }
}

impl Job for ChaosTxItems {
    const KIND: &'static str = "chaos_tx_items";
    const PARTITIONABLE: bool = true;
    type Params = ChaosParams;
    type Cursor = i64;
    /// A batch and the cursor just past it (as the adapter's items).
    type Item = (Vec<i64>, i64);

    fn enumerate(
        &self,
        params: &ChaosParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Self::Item, i64>, JobError> {
        Ok(params
            .batches(cursor)?
            .map(|step| step.map(|(batch, cursor)| ((batch, cursor), cursor))))
    }

    fn count_items(&self, (batch, _): &Self::Item) -> u64 {
        batch.len() as u64
    }

    async fn total(&self, params: &ChaosParams) -> Result<Option<u64>, JobError> {
        Ok(params.total())
    }

    async fn partition(&self, params: &ChaosParams, n: u32) -> Result<Vec<ChaosParams>, JobError> {
        params.validate()?;
        Ok(params.partition(n))
    }

    async fn split(
        &self,
        params: &ChaosParams,
        cursor: Option<&i64>,
    ) -> Result<Option<(ChaosParams, ChaosParams)>, JobError> {
        Ok(params.split(cursor))
    }

    async fn process(
        &self,
        ctx: &JobContext<ChaosParams>,
        item: Self::Item,
    ) -> Result<(), JobError> {
        match self.transactional(self.stores.url(&ctx.params)?).await? {
            TxJob::Postgres(job) => Job::process(&*job, ctx, item).await,
            TxJob::MySql(job) => Job::process(&*job, ctx, item).await,
        }
    }
}

/// The work of [`ChaosTxItems`], inside the item's transaction.
#[derive(Debug)]
struct TxLog {
    /// The log table, qualified.
    table: String,
}

impl TxLog {
    /// The pause, spent inside the transaction after the fenced cursor write: a kill
    /// during it leaves an open transaction the server rolls back.
    async fn pause(ctx: &JobContext<ChaosParams>) {
        if ctx.params.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.pause_ms)).await;
        }
    }
}

impl iterjob_postgres::TransactionalJob<Postgres> for TxLog {
    const KIND: &'static str = ChaosTxItems::KIND;
    type Params = ChaosParams;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &ChaosParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        params.batches(cursor)
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    async fn process(
        &self,
        ctx: &JobContext<ChaosParams>,
        batch: Vec<i64>,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), JobError> {
        TxLog::pause(ctx).await;
        insert_pg(&mut **tx, &self.table, &Entry::of(ctx, &batch)).await?;
        Ok(())
    }
}

impl iterjob_mysql::TransactionalJob<MySql> for TxLog {
    const KIND: &'static str = ChaosTxItems::KIND;
    type Params = ChaosParams;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &ChaosParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        params.batches(cursor)
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    async fn process(
        &self,
        ctx: &JobContext<ChaosParams>,
        batch: Vec<i64>,
        tx: &mut Transaction<'_, MySql>,
    ) -> Result<(), JobError> {
        TxLog::pause(ctx).await;
        insert_mysql(&mut **tx, &self.table, &Entry::of(ctx, &batch)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_the_database_url_in_the_arguments() {
        assert_eq!(
            database_url_from_args(args(&["bin", "--database-url", "postgres://a/b", "worker"])),
            Some("postgres://a/b".to_string())
        );
        assert_eq!(
            database_url_from_args(args(&["bin", "worker", "--database-url=postgres://c/d"])),
            Some("postgres://c/d".to_string())
        );
    }

    #[test]
    fn params_are_checked() {
        let p = |n, batch| ChaosParams {
            n,
            batch,
            pause_ms: 0,
            database_url: None,
            range: None,
        };
        assert!(p(10, 0).validate().is_err());
        assert!(p(-1, 5).validate().is_err());
        assert!(p(10, 5).validate().is_ok());
    }
}
