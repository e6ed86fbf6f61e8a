//! # iterjob-chaos
//!
//! Chaos and outage tests for iterjob on PostgreSQL, with real worker processes.
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
//!   [`iterjob_postgres::Transactional`]: each batch's rows and the cursor past the
//!   batch commit in one transaction (the pause is spent inside it, so kills land
//!   mid-transaction too). No item may ever be logged twice.
//!
//! Parameters of both: `{"n": 10000, "batch": 50, "pause_ms": 100}` ([`ChaosParams`]).
//! Both can be partitioned (`enqueue --partitions 4`): each partition walks an equal
//! integer range of `0..n` and logs under its own job id, and idle workers split the
//! partitions that have the most left.
//!
//! The database is the one the binary was given, the usual way (`--database-url` or
//! `ITERJOB_DATABASE_URL`, a `postgres://` URL, with `?schema=NAME` for a schema of
//! its own); a job may name another in its parameters (`database_url`). The log
//! table lives in the store's schema, next to `jobs`; create it with
//! [`create_log_table`] before the workers start. Each kind keeps one [`PgStore`] per
//! URL (a small pool of its own, [`KIND_POOL_SIZE`] connections, no `LISTEN`).
//!
//! ```text
//! iterjob-chaos --database-url 'postgres://postgres@127.0.0.1/test?schema=chaos' \
//!     worker --concurrency 4 --lease 2s --heartbeat-interval 500ms
//! iterjob-chaos enqueue chaos_tx_items --params '{"n": 10000, "batch": 50, "pause_ms": 100}'
//! ```
//!
//! # The tests
//!
//! Both need the PostgreSQL server of `ITERJOB_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached they
//! **fail if the environment variable `CI` is set**, and otherwise print a notice and
//! skip. Each works in a fresh schema with a random name, dropped at the end.
//!
//! * `tests/chaos.rs` (part of the normal test run, about 1.5 minutes): 50 jobs of
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
use iterjob::{Job, JobContext, JobError};
use iterjob_postgres::{PgOptions, PgPool, PgStore, Transactional, TransactionalJob};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};

/// The log table's name, in the store's schema: one row per item processed.
pub const LOG_TABLE: &str = "chaos_log";

/// Connections in the pool each kind keeps per database URL for its log writes.
pub const KIND_POOL_SIZE: u32 = 6;

/// The environment variable the command line reads the database URL from.
pub const DATABASE_URL_ENV: &str = "ITERJOB_DATABASE_URL";

/// Creates the log table (`chaos_log`) in `schema` if it is missing: `id` (insertion
/// order), `job_id`, `item`, `run_token` (the run that logged the row), `worker_pid`
/// (the worker process) and `logged_at` (the server's clock).
///
/// # Errors
/// When the statement fails.
pub async fn create_log_table(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".{LOG_TABLE} (
            id          BIGSERIAL   PRIMARY KEY,
            job_id      BIGINT      NOT NULL,
            item        BIGINT      NOT NULL,
            run_token   BIGINT      NOT NULL,
            worker_pid  INTEGER     NOT NULL,
            logged_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )"
    ))
    .execute(pool)
    .await?;
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

/// The stores a kind opened, one per database URL.
#[derive(Debug, Default)]
struct Stores {
    /// The URL the binary was given.
    default_url: Option<String>,
    cache: Mutex<HashMap<String, PgStore>>,
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
                    "no database URL: pass --database-url postgres://… (or set \
                     ITERJOB_DATABASE_URL), or name one in the parameters (database_url)",
                )
            })
    }

    fn cached(&self, url: &str) -> Option<PgStore> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned()
    }

    /// The store on `url`, opened on first use.
    async fn get(&self, url: &str) -> Result<PgStore, JobError> {
        if let Some(store) = self.cached(url) {
            return Ok(store);
        }
        let options = PgOptions::new(url)
            .max_connections(KIND_POOL_SIZE)
            .notify(false);
        let store = PgStore::connect_with(options)
            .await
            .map_err(|err| match err {
                iterjob::Error::Config(_) => JobError::fatal(err),
                err => JobError::retryable(err),
            })?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache.entry(url.to_string()).or_insert(store).clone())
    }
}

/// The statement that logs a batch: `$1` job id, `$2` items, `$3` run token, `$4` pid.
fn log_sql(schema: &str) -> String {
    format!(
        "INSERT INTO \"{schema}\".{LOG_TABLE} (job_id, item, run_token, worker_pid) \
         SELECT $1, unnest($2::bigint[]), $3, $4"
    )
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
        let store = self.stores.get(self.stores.url(&ctx.params)?).await?;
        if ctx.params.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.pause_ms)).await;
        }
        sqlx::query(&log_sql(store.schema()))
            .bind(ctx.job_id)
            .bind(&batch)
            .bind(ctx.run_token.0)
            .bind(pid())
            .execute(store.pool())
            .await?;
        Ok(())
    }
}

/// `chaos_tx_items`: exactly-once. As [`ChaosItems`], but each batch's pause and
/// insert run inside the transaction [`Transactional`] opens, which also advances the
/// cursor past the batch: a crash rolls both back, so no item is logged twice.
#[derive(Debug, Default)]
pub struct ChaosTxItems {
    stores: Stores,
    jobs: Mutex<HashMap<String, Arc<Transactional<TxLog>>>>,
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
    /// worker's: same database and schema).
    async fn transactional(&self, url: &str) -> Result<Arc<Transactional<TxLog>>, JobError> {
        if let Some(job) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(Arc::clone(job));
        }
        let store = self.stores.get(url).await?;
        let job = Arc::new(Transactional::new(
            TxLog {
                sql: log_sql(store.schema()),
            },
            store,
        ));
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(jobs.entry(url.to_string()).or_insert(job)))
    }
}

impl Job for ChaosTxItems {
    const KIND: &'static str = "chaos_tx_items";
    type Params = ChaosParams;
    type Cursor = i64;
    /// A batch and the cursor just past it (as [`Transactional`]'s items).
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
        let job = self.transactional(self.stores.url(&ctx.params)?).await?;
        Job::process(&*job, ctx, item).await
    }
}

/// The work of [`ChaosTxItems`], inside the item's transaction.
#[derive(Debug)]
struct TxLog {
    sql: String,
}

impl TransactionalJob<sqlx::Postgres> for TxLog {
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
        // inside the transaction, after the fenced cursor write: a kill during the
        // pause leaves an open transaction the server rolls back
        if ctx.params.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.pause_ms)).await;
        }
        sqlx::query(&self.sql)
            .bind(ctx.job_id)
            .bind(&batch)
            .bind(ctx.run_token.0)
            .bind(pid())
            .execute(&mut **tx)
            .await?;
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
