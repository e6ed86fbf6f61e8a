//! `iterjob demo`: the seed's example. `Product.all.find_each { |p| p.sync_and_refresh }`,
//! as an interruptible, resumable job over a real SQLite table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use iterjob::store::{JobFilter, JobId, JobRecord, JobState, NewJob, Store};
use iterjob::{Job, JobContext, JobError, Registry, RunningJob, Worker, WorkerConfig};
use iterjob_sqlite::{
    KeyValue, Keyset, KeysetCursor, SqliteStore, Transactional, TransactionalJob,
};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use crate::commands::wait_for_signal;
use crate::store::open_store;

/// The demo's unique key: at most one unfinished demo job per database.
const DEMO_KEY: &str = "iterjob-demo";

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Products to create (only when a new demo starts; a resumed one keeps its own).
    #[arg(long, default_value_t = 60_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub products: u64,
    /// Checkpoint and stop after this long (e.g. 5s), as a deploy would.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_interrupt)]
    pub interrupt_after: Option<Duration>,
    /// Simulated latency of the sync API, per batch of 100 products.
    #[arg(long, default_value = "20ms", value_parser = parse_interrupt)]
    pub api_latency: Duration,
    /// Walk the products as this many partitions at once (one worker slot each),
    /// split at quantiles of the product ids; idle slots split the partitions that
    /// still have the most left. Only when a new demo starts.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub partitions: Option<u32>,
}

fn parse_interrupt(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "`{s}` is negative; give a positive duration such as 5s"
        ));
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 500ms, 5s, 2m"))?;
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!(
            "`{s}` is longer than a day; the demo is not that long"
        ));
    }
    Ok(d)
}

/// The demo's job kind: syncs and refreshes every product, 100 at a time, walking
/// `demo_products` with the keyset enumerator. Parameters name the database, so any
/// `iterjob worker` on the same file can run (and resume) it.
///
/// The products live in the job store's own SQLite file, so by default
/// (`exactly_once: true`) each batch's updates and the cursor past the batch commit in
/// one transaction ([`Transactional`]): every product is synced exactly once, even
/// when a worker is killed mid-batch. With `"exactly_once": false` the updates commit
/// on their own and the runtime checkpoints the cursor every second, so a crash
/// repeats the products synced since the last checkpoint (at least once).
#[derive(Debug, Default)]
pub struct SyncProducts {
    stores: Mutex<HashMap<String, SqliteStore>>,
}

/// Parameters of [`SyncProducts`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// The SQLite database holding `demo_products`: the job store's own file.
    pub database_url: String,
    /// Products per batch (one transaction each).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Simulated API latency per batch, in milliseconds.
    #[serde(default)]
    pub api_latency_ms: u64,
    /// Commit each batch's updates together with the cursor past it (default), so
    /// every product is synced exactly once even across crashes; `false` syncs at
    /// least once (a crash repeats the batches since the last checkpoint).
    #[serde(default = "default_exactly_once")]
    pub exactly_once: bool,
    /// Abort the whole process when this product id comes up, as a crash would
    /// (for trying out crash recovery and poison-job detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_at_product: Option<i64>,
    /// The products this job (a partition) walks: ids in `(after, until]`; all of
    /// them by default.
    #[serde(default, skip_serializing_if = "is_all")]
    pub range: KeyRange<KeysetCursor>,
}

fn is_all(range: &KeyRange<KeysetCursor>) -> bool {
    range.after.is_none() && range.until.is_none()
}

fn default_batch() -> u32 {
    100
}

fn default_exactly_once() -> bool {
    true
}

impl SyncProducts {
    /// Uses `pool` for jobs whose parameters name `database_url`.
    pub fn with_pool(database_url: &str, pool: SqlitePool) -> Self {
        Self::with_store(database_url, SqliteStore::from_pool(pool))
    }

    /// Uses `store` (already migrated) for jobs whose parameters name `database_url`.
    pub fn with_store(database_url: &str, store: SqliteStore) -> Self {
        let job = SyncProducts::default();
        job.lock().insert(database_url.to_string(), store);
        job
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SqliteStore>> {
        self.stores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store on the database `url` names, opened on first use.
    fn store(&self, url: &str) -> Result<SqliteStore, JobError> {
        if let Some(store) = self.lock().get(url) {
            return Ok(store.clone());
        }
        let options = SqliteStore::options(url)
            .map_err(|e| JobError::fatal(format!("database_url `{url}`: {e}")))?
            .create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        let store = SqliteStore::from_pool(pool);
        self.lock().insert(url.to_string(), store.clone());
        Ok(store)
    }

    /// The work, as a transactional job on the database `url` names.
    fn transactional(&self, url: &str) -> Result<Transactional<ProductSync>, JobError> {
        let store = self.store(url)?;
        Ok(Transactional::new(
            ProductSync {
                store: store.clone(),
            },
            store,
        ))
    }
}

impl Job for SyncProducts {
    const KIND: &'static str = "demo_sync_products";
    type Params = SyncParams;
    type Cursor = KeysetCursor;
    /// A batch of products and the cursor just past it.
    type Item = (Vec<SqliteRow>, KeysetCursor);

    fn enumerate(
        &self,
        params: &SyncParams,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Self::Item, KeysetCursor>, JobError> {
        if params.batch_size == 0 || params.batch_size > 10_000 {
            return Err(JobError::fatal(format!(
                "batch_size {} is out of range; use 1..=10000",
                params.batch_size
            )));
        }
        let store = self.store(&params.database_url)?;
        // as `Transactional::enumerate`: each batch carries the cursor past it
        Ok(products(params)
            .batches(store.pool(), cursor)
            .map(|step| step.map(|(batch, cursor)| ((batch, cursor.clone()), cursor))))
    }

    fn count_items(&self, (batch, _): &Self::Item) -> u64 {
        batch.len() as u64
    }

    /// Splits the products at quantiles of their ids: each partition gets as many.
    async fn partition(&self, params: &SyncParams, n: u32) -> Result<Vec<SyncParams>, JobError> {
        let store = self.store(&params.database_url)?;
        let ranges = products(params).quantile_ranges(store.pool(), n).await?;
        Ok(ranges
            .into_iter()
            .map(|range| SyncParams {
                range,
                ..params.clone()
            })
            .collect())
    }

    /// Gives the second half of the products left after `cursor` to a new partition.
    async fn split(
        &self,
        params: &SyncParams,
        cursor: Option<&KeysetCursor>,
    ) -> Result<Option<(SyncParams, SyncParams)>, JobError> {
        let store = self.store(&params.database_url)?;
        let Some(mid) = products(params).midpoint(store.pool(), cursor).await? else {
            return Ok(None);
        };
        let (keep, give) = params.range.split_at(mid);
        Ok(Some((
            SyncParams {
                range: keep,
                ..params.clone()
            },
            SyncParams {
                range: give,
                ..params.clone()
            },
        )))
    }

    async fn total(&self, params: &SyncParams) -> Result<Option<u64>, JobError> {
        self.transactional(&params.database_url)?
            .job()
            .total(params)
            .await
    }

    async fn process(
        &self,
        ctx: &JobContext<SyncParams>,
        (batch, cursor): Self::Item,
    ) -> Result<(), JobError> {
        // "sync": the remote API call this stands for, outside any transaction
        if ctx.params.api_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.api_latency_ms)).await;
        }
        // "refresh": write the result back, one transaction per batch
        let job = self.transactional(&ctx.params.database_url)?;
        if ctx.params.exactly_once {
            // the updates and the cursor past the batch commit together
            job.process(ctx, (batch, cursor)).await
        } else {
            // the updates commit alone; the runtime checkpoints the cursor later
            let mut tx = job.store().pool().begin().await?;
            job.job().process(ctx, batch, &mut tx).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// The demo's collection: the products of the job's range, in id order.
fn products(params: &SyncParams) -> Keyset {
    Keyset::table("demo_products")
        .key("id")
        .columns(["id", "name", "price_cents"])
        .batch_size(params.batch_size as usize)
        .range(&params.range)
}

/// The demo's work for one batch, in a transaction on the products' database.
#[derive(Debug)]
struct ProductSync {
    store: SqliteStore,
}

impl TransactionalJob<Sqlite> for ProductSync {
    const KIND: &'static str = SyncProducts::KIND;
    type Params = SyncParams;
    type Cursor = KeysetCursor;
    type Item = Vec<SqliteRow>;

    fn enumerate(
        &self,
        params: &SyncParams,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Vec<SqliteRow>, KeysetCursor>, JobError> {
        Ok(products(params).batches(self.store.pool(), cursor))
    }

    fn count_items(&self, batch: &Vec<SqliteRow>) -> u64 {
        batch.len() as u64
    }

    async fn total(&self, params: &SyncParams) -> Result<Option<u64>, JobError> {
        let bound = |c: &Option<KeysetCursor>| match c.as_ref().map(|c| c.values()) {
            Some([KeyValue::Integer(id)]) => Ok(Some(*id)),
            None => Ok(None),
            Some(other) => Err(JobError::fatal(format!(
                "product range bound {other:?} is not one integer id"
            ))),
        };
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM demo_products WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR id <= ?2)",
        )
        .bind(bound(&params.range.after)?)
        .bind(bound(&params.range.until)?)
        .fetch_one(self.store.pool())
        .await?;
        Ok(Some(n as u64))
    }

    async fn process(
        &self,
        ctx: &JobContext<SyncParams>,
        batch: Vec<SqliteRow>,
        tx: &mut Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        let now = iterjob::store::now_millis();
        for row in &batch {
            let id: i64 = row.try_get("id")?;
            if ctx.params.abort_at_product == Some(id) {
                eprintln!("aborting the process at product {id}, as asked (abort_at_product)");
                std::process::abort();
            }
            let name: String = row.try_get("name")?;
            let price: i64 = row.try_get("price_cents")?;
            sqlx::query(
                "UPDATE demo_products SET synced_at = ?, checksum = ?, sync_count = sync_count + 1 WHERE id = ?",
            )
            .bind(now)
            .bind(format!("{:016x}", checksum(&name, price)))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// `1 run`, `2 runs`.
fn plural(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// FNV-1a over the product's fields.
fn checksum(name: &str, price: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(price.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

async fn ensure_products(pool: &SqlitePool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS demo_products (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            price_cents INTEGER NOT NULL,
            synced_at INTEGER,
            checksum TEXT,
            sync_count INTEGER NOT NULL DEFAULT 0
        )",
    )
    .execute(pool)
    .await
    .context("creating the demo_products table")?;
    Ok(())
}

async fn create_products(pool: &SqlitePool, n: u64) -> Result<()> {
    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template("creating products {wide_bar} {pos}/{len} ({per_sec})")
            .expect("valid template"),
    );
    sqlx::query("DELETE FROM demo_products")
        .execute(pool)
        .await?;
    let mut next = 1u64;
    while next <= n {
        let end = (next + 9_999).min(n);
        let mut tx = pool.begin().await?;
        for id in next..=end {
            sqlx::query("INSERT INTO demo_products (id, name, price_cents) VALUES (?, ?, ?)")
                .bind(id as i64)
                .bind(format!("Product {id}"))
                .bind(((id * 7919) % 100_000) as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        bar.set_position(end);
        next = end + 1;
    }
    bar.finish_and_clear();
    Ok(())
}

/// An absolute `sqlite://` URL for the database, so workers started elsewhere find it.
fn absolute_url(url: &str) -> String {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    match std::path::absolute(path) {
        Ok(abs) => format!("sqlite://{}", abs.display()),
        Err(_) => url.to_string(),
    }
}

fn cursor_text(job: &JobRecord) -> String {
    job.cursor
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(start)".into())
}

pub(crate) async fn run(url: &str, args: DemoArgs) -> Result<()> {
    let open = open_store(url).await?;
    let store = open.store;
    let sqlite = open
        .sqlite
        .context("the demo keeps its products in SQLite; use a sqlite:// database URL")?;
    let pool = sqlite.pool().clone();
    ensure_products(&pool).await?;
    let database_url = absolute_url(url);

    let existing = store
        .job_list(&JobFilter {
            kind: Some(SyncProducts::KIND.to_string()),
            limit: Some(20),
            ..JobFilter::default()
        })
        .await?
        .into_iter()
        .find(|j| !j.state.is_finished() && j.parent_id.is_none());

    let id = match existing {
        Some(job) => {
            let from = if job.is_parent() {
                "its partitions' checkpoints".to_string()
            } else {
                format!("cursor {}", cursor_text(&job))
            };
            println!(
                "resuming demo job {} ({}) from {from}: {} of {} products already synced",
                job.id,
                job.state,
                job.items_done,
                job.items_total
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into())
            );
            if args.products != 60_000 {
                println!("(--products applies to a new demo only; this one keeps its products)");
            }
            if args.partitions.is_some() && args.partitions != job.partitions {
                println!("(--partitions applies to a new demo only; this one keeps its own)");
            }
            match job.state {
                JobState::Paused => {
                    store.job_resume(job.id).await?;
                }
                JobState::Running if job.worker_id.is_some() => {
                    println!(
                        "job {} is leased by worker {} (crashed or still running?); waiting for its lease to expire…",
                        job.id,
                        job.worker_id.as_deref().unwrap_or("?")
                    );
                }
                _ => {}
            }
            job.id
        }
        None => {
            println!("creating {} products in {url}…", args.products);
            create_products(&pool, args.products).await?;
            let params = SyncParams {
                database_url: database_url.clone(),
                batch_size: 100,
                api_latency_ms: args.api_latency.as_millis() as u64,
                exactly_once: true,
                abort_at_product: None,
                range: KeyRange::all(),
            };
            let mut new = NewJob::of(&SyncProducts::default(), &params)?.unique_key(DEMO_KEY);
            if let Some(n) = args.partitions {
                new = new.partitions(n);
            }
            let id = store.job_insert(&new).await?;
            match args.partitions {
                Some(n) => println!(
                    "enqueued demo job {id}: sync and refresh every product, as {n} partitions walked at once"
                ),
                None => println!("enqueued demo job {id}: sync and refresh every product"),
            }
            id
        }
    };

    let partitions = store
        .job_get(id)
        .await?
        .context("the demo job vanished from the store")?
        .partitions;
    let registry = Registry::new().with(SyncProducts::with_store(&database_url, sqlite.clone()));
    let mut config = WorkerConfig::default();
    config.concurrency = partitions.map_or(1, |n| n as usize);
    config.rescue_interval = Duration::from_secs(1);
    config.poll_interval = Duration::from_millis(100);
    let worker = Arc::new(Worker::new(Arc::clone(&store), registry, config)?);
    let shutdown = worker.shutdown_token();
    let running = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };

    let started = Instant::now();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} products {msg}",
        )
        .expect("valid template"),
    );
    let interrupt_at = args
        .interrupt_after
        .map(|d| tokio::time::Instant::now() + d);
    let signal = wait_for_signal();
    tokio::pin!(signal);
    if partitions.is_some() {
        bar.finish_and_clear();
        let interrupted = watch_partitions(&*store, &worker, id, interrupt_at, signal).await?;
        return finish(
            &*store,
            &pool,
            worker,
            shutdown,
            running,
            id,
            interrupted,
            started,
        )
        .await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut bar_started = false;
    let mut run_start: Option<(u64, Instant)> = None;
    let interrupted = loop {
        tokio::select! {
            _ = &mut signal => break true,
            _ = async { tokio::time::sleep_until(interrupt_at.expect("set")).await }, if interrupt_at.is_some() => break true,
            _ = tick.tick() => {}
        }
        if let Some(live) = worker.running().into_iter().find(|j| j.id == id) {
            // rate and ETA over this run only (a resumed job starts part-way)
            let (first_items, first_at) =
                *run_start.get_or_insert((live.items_done, Instant::now()));
            if !bar_started {
                bar.reset();
                bar_started = true;
            }
            if let Some(total) = live.items_total {
                bar.set_length(total);
            }
            bar.set_position(live.items_done);
            let secs = first_at.elapsed().as_secs_f64();
            let rate = if secs > 0.5 {
                (live.items_done - first_items) as f64 / secs
            } else {
                0.0
            };
            let eta = match live.items_total {
                Some(total) if rate > 0.0 => {
                    let left = Duration::from_secs(
                        (total.saturating_sub(live.items_done) as f64 / rate).round() as u64,
                    );
                    format!(", ETA {}", humantime::format_duration(left))
                }
                _ => String::new(),
            };
            bar.set_message(format!("({rate:.0}/s{eta})"));
            continue;
        }
        let job = store
            .job_get(id)
            .await?
            .context("the demo job vanished from the store")?;
        if job.state.is_finished() {
            break false;
        }
        bar.set_message(format!("({})", job.state));
    };
    bar.finish_and_clear();
    finish(
        &*store,
        &pool,
        worker,
        shutdown,
        running,
        id,
        interrupted,
        started,
    )
    .await
}

/// Stops the worker and prints how the demo ended.
#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &dyn Store,
    pool: &SqlitePool,
    worker: Arc<Worker>,
    shutdown: iterjob::CancellationToken,
    running: tokio::task::JoinHandle<iterjob::Result<iterjob::WorkerReport>>,
    id: JobId,
    interrupted: bool,
    started: Instant,
) -> Result<()> {
    shutdown.cancel();
    let report = running.await.context("the demo worker panicked")??;
    drop(worker);
    let job = store
        .job_get(id)
        .await?
        .context("the demo job vanished from the store")?;

    if interrupted && !job.state.is_finished() && job.is_parent() {
        println!(
            "interrupted: the partitions of job {} checkpointed after {} of {} products ({} items this run)",
            job.id,
            job.items_done,
            job.items_total
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into()),
            report.items
        );
        println!("run `iterjob demo` again to resume from there");
        return Ok(());
    }
    if interrupted && !job.state.is_finished() {
        println!(
            "interrupted: job {} checkpointed at cursor {} after {} of {} products ({} items this run)",
            job.id,
            cursor_text(&job),
            job.items_done,
            job.items_total
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into()),
            report.items
        );
        println!("run `iterjob demo` again to resume from there");
        return Ok(());
    }

    let (synced, repeated): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sync_count > 0), COUNT(*) FILTER (WHERE sync_count > 1) FROM demo_products",
    )
    .fetch_one(pool)
    .await?;
    let partitions = store.job_partitions(job.id).await?;
    match job.state {
        JobState::Completed if !partitions.is_empty() => {
            let asked = job.partitions.unwrap_or(0) as usize;
            let sum = |f: fn(&JobRecord) -> u32| partitions.iter().map(f).sum::<u32>();
            println!(
                "demo job {} completed: {} products synced ({} more than once) by {} partitions ({} from dynamic splits), {:.1}s of work in all; {}, {}, {}; this session {:.1}s",
                job.id,
                synced,
                repeated,
                partitions.len(),
                partitions.len().saturating_sub(asked),
                job.running_ms as f64 / 1000.0,
                plural(sum(|p| p.interruptions), "interruption"),
                plural(sum(|p| p.runs), "partition run"),
                plural(sum(|p| p.attempts), "failed attempt"),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        JobState::Completed => {
            let secs = job.running_ms as f64 / 1000.0;
            println!(
                "demo job {} completed: {} products synced ({} more than once) in {:.1}s of running time ({:.0}/s); {}, {}, {}; this session {:.1}s",
                job.id,
                synced,
                repeated,
                secs,
                job.items_done as f64 / secs.max(0.001),
                plural(job.interruptions, "interruption"),
                plural(job.runs, "run"),
                plural(job.attempts, "failed attempt"),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        state => bail!(
            "demo job {} ended {state}: {}",
            job.id,
            job.last_error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// Shows one progress bar per partition and one for the whole job until the job
/// finishes (false) or the demo is interrupted (true).
async fn watch_partitions(
    store: &dyn Store,
    worker: &Worker,
    id: JobId,
    interrupt_at: Option<tokio::time::Instant>,
    mut signal: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<bool> {
    let multi = MultiProgress::new();
    let total_bar = multi.add(
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] all        {wide_bar} {pos}/{len} products {msg}",
            )
            .expect("valid template"),
        ),
    );
    let part_style = ProgressStyle::with_template("  {prefix:>14} {bar:40} {pos}/{len} {msg}")
        .expect("valid template");
    let mut bars: BTreeMap<JobId, ProgressBar> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut first: Option<(u64, Instant)> = None;
    let interrupted = loop {
        tokio::select! {
            _ = &mut signal => break true,
            _ = async { tokio::time::sleep_until(interrupt_at.expect("set")).await }, if interrupt_at.is_some() => break true,
            _ = tick.tick() => {}
        }
        let parent = store
            .job_get(id)
            .await?
            .context("the demo job vanished from the store")?;
        if parent.state.is_finished() {
            break false;
        }
        let live: HashMap<JobId, RunningJob> =
            worker.running().into_iter().map(|j| (j.id, j)).collect();
        let parts = store.job_partitions(id).await?;
        let (mut done, mut total, mut known) = (0u64, 0u64, true);
        for part in &parts {
            let running = live.get(&part.id);
            let part_done = running.map_or(part.items_done, |r| r.items_done);
            let part_total = running.and_then(|r| r.items_total).or(part.items_total);
            done += part_done;
            match part_total {
                Some(t) => total += t,
                None => known = false,
            }
            let bar = bars.entry(part.id).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0).with_style(part_style.clone()));
                bar.set_prefix(format!("partition {}", part.id));
                bar
            });
            if let Some(t) = part_total {
                bar.set_length(t);
            }
            bar.set_position(part_done);
            let state = if running.is_some() {
                "running".to_string()
            } else {
                part.state.to_string()
            };
            bar.set_message(state);
        }
        if known && total > 0 {
            total_bar.set_length(total);
        }
        total_bar.set_position(done);
        let (first_done, first_at) = *first.get_or_insert((done, Instant::now()));
        let secs = first_at.elapsed().as_secs_f64();
        let rate = if secs > 0.5 {
            done.saturating_sub(first_done) as f64 / secs
        } else {
            0.0
        };
        let eta = if known && rate > 0.0 {
            let left =
                Duration::from_secs((total.saturating_sub(done) as f64 / rate).round() as u64);
            format!(", ETA {}", humantime::format_duration(left))
        } else {
            String::new()
        };
        total_bar.set_message(format!("({rate:.0}/s{eta}; {} partitions)", parts.len()));
    };
    for bar in bars.values() {
        bar.finish_and_clear();
    }
    total_bar.finish_and_clear();
    Ok(interrupted)
}
