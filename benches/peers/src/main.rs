//! `peers`: iterjob's PostgreSQL store against other Rust PostgreSQL job queues.
//!
//! * `peers throughput` — one-item jobs: batch-enqueue N, work them off with a no-op
//!   handler, every system with the same concurrency, pool and poll interval, each
//!   peer at its documented throughput recipe and at iterjob's mean claim size, beside
//!   the database's floor (a minimal client's claim-and-finish loop); interleaved
//!   for R rounds, each system in a fresh database (dropped after).
//! * `peers checkpoint` — the cost of one `Store::job_checkpoint` on PostgreSQL.
//! * `peers sigterm` — SIGTERM to a `peers-worker` child running a long job (10 ms
//!   items) → time until the job row is `queued` again.
//! * `peers kill` — SIGKILL that worker mid-job, start another: time until the job
//!   runs again and until its `items_done` advances.
//!
//! See BENCHMARKS.md ("PostgreSQL: iterjob against other Rust job queues").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sqlx::{Connection, Executor};

/// Every system's no-op handler counts here (reset before each run).
static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Parser, Debug)]
#[command(name = "peers")]
struct Cli {
    /// Server URL without the database (databases are created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// Database to connect to for CREATE/DROP DATABASE.
    #[arg(long, default_value = "test")]
    admin_db: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One-item jobs: enqueue time and work-off throughput, interleaved rounds.
    ///
    /// Systems are named `system` or `system:profile`: `recipe` is the peer's own
    /// documented throughput setting, `equal` iterjob's mean claim (`--claim`; see
    /// BENCHMARKS.md for each). `floor:B` is the database's own limit: a
    /// minimal client claiming and finishing B rows per statement; `floor2:B` the
    /// same in two transactions (claim, then finish), as a durable queue must;
    /// `store:B` iterjob's own claim and release statements (`PgStore` called
    /// directly, B jobs a claim, no worker): the ceiling of iterjob's SQL;
    /// `held:B` a held-lock claim protocol on iterjob's own table (a prototype of
    /// its statements, no worker; see `run_held`); `heldgin:B`, `heldrows:B` and
    /// `heldhash:B` the same with claims skipping jobs named in a crash record (see
    /// `Exclude`).
    Throughput {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Poll interval in milliseconds (where configurable).
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// Pool size given to every system.
        #[arg(long, default_value_t = 10)]
        pool: u32,
        /// Comma-separated systems; see the command's help.
        #[arg(
            long,
            default_value = "iterjob,graphile_worker:recipe,graphile_worker:equal,apalis:recipe,apalis:equal,awa:recipe,awa:equal,sqlxmq,floor:claim,floor:100,floor2:claim"
        )]
        systems: String,
        /// Give up on a work-off after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
        /// The claim size of the `equal` profiles and of `floor:claim`: what
        /// iterjob's worker claims on average (default 9 per slot, 72 at
        /// concurrency 8, where it measured 69-73 a claim). Every round prints the
        /// worker's measured mean, and the summary warns when this is a quarter or
        /// more off it.
        #[arg(long)]
        claim: Option<usize>,
    },
    /// Time of one `Store::job_checkpoint` (median, p99).
    Checkpoint {
        #[arg(long, default_value_t = 5_000)]
        iterations: usize,
    },
    /// SIGTERM to a worker running a long job → job `queued` again.
    Sigterm {
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Milliseconds per item.
        #[arg(long, default_value_t = 10)]
        item_ms: u64,
    },
    /// SIGKILL a worker mid-job, start another → job running again, items advancing.
    Kill {
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Lease settings to try (CLI syntax), e.g. 2s,30s.
        #[arg(long, default_value = "2s,30s")]
        leases: String,
        #[arg(long, default_value_t = 10)]
        item_ms: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Throughput {
                jobs,
                rounds,
                concurrency,
                poll_ms,
                pool,
                ref systems,
                timeout_s,
                claim,
            } => {
                let systems: Vec<String> =
                    systems.split(',').map(|s| s.trim().to_string()).collect();
                let s = Settings {
                    jobs,
                    concurrency,
                    // what iterjob's worker claims on average for one-item jobs: it
                    // claims for its free slots, the slots that free before the claim
                    // returns, and what they run in two claim round trips (up to 16 a
                    // slot); measured, not assumed (see `claim_sizes`)
                    claim: claim.unwrap_or(9 * concurrency),
                    poll: Duration::from_millis(poll_ms),
                    pool,
                    timeout: Duration::from_secs(timeout_s),
                };
                throughput(&cli, &systems, rounds, &s).await
            }
            Cmd::Checkpoint { iterations } => checkpoint(&cli, iterations).await,
            Cmd::Sigterm { repeats, item_ms } => sigterm(&cli, repeats, item_ms).await,
            Cmd::Kill {
                repeats,
                ref leases,
                item_ms,
            } => kill(&cli, repeats, leases, item_ms).await,
        }
    })
}

// ---------------------------------------------------------------------------
// databases

impl Cli {
    fn url(&self, db: &str) -> String {
        format!("{}/{}", self.server.trim_end_matches('/'), db)
    }

    async fn create_db(&self, db: &str) -> Result<String> {
        let mut conn = sqlx::PgConnection::connect(&self.url(&self.admin_db)).await?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
            .await?;
        conn.execute(format!("CREATE DATABASE \"{db}\"").as_str())
            .await?;
        conn.close().await?;
        Ok(self.url(db))
    }

    async fn drop_db(&self, db: &str) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.url(&self.admin_db)).await?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str())
            .await?;
        conn.close().await?;
        Ok(())
    }
}

async fn small_pool(url: &str) -> Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?)
}

// ---------------------------------------------------------------------------
// 1. throughput

#[derive(Clone, Debug)]
struct Settings {
    jobs: usize,
    concurrency: usize,
    /// iterjob's mean claim size at this concurrency (the `equal` profiles and
    /// `floor:claim` use it).
    claim: usize,
    poll: Duration,
    pool: u32,
    timeout: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    enqueue: Duration,
    /// Worker start → every job done in the database.
    workoff: Duration,
    /// Worker start → the handler ran for the last job.
    handled: Duration,
    /// The database's committed + rolled back transactions when the worker started.
    xacts_before: i64,
}

/// iterjob's mean claim size in the run just done on `url`, from its jobs: the rows
/// of one claim share their `started_at` (the claim statement's clock), and a job
/// claimed again (given back unstarted, claimed later) keeps its first.
async fn mean_claim(url: &str) -> Result<f64> {
    let pool = small_pool(url).await?;
    let mean: Option<f64> = sqlx::query_scalar(
        "SELECT count(*)::float8 / nullif(count(DISTINCT started_at), 0) \
         FROM iterjob.jobs WHERE started_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(mean.unwrap_or(0.0))
}

async fn xacts(pool: &sqlx::PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// Runs one system (by its `system[:profile]` name) in the database at `url`.
async fn run_system(url: &str, s: &Settings, sys: &str) -> Result<Sample> {
    let (name, profile) = sys.split_once(':').unwrap_or((sys, ""));
    let batch = |p: &str| -> Result<usize> {
        match p {
            "claim" => Ok(s.claim),
            n => n
                .parse()
                .with_context(|| format!("{sys}: the batch after ':' is `claim` or a number")),
        }
    };
    match (name, profile) {
        ("iterjob", "") => run_iterjob(url, s, None).await,
        ("iterjob", n) => run_iterjob(url, s, Some(batch(n)?.saturating_sub(s.concurrency))).await,
        ("graphile_worker", "recipe") => run_graphile(url, s, Graphile::Recipe).await,
        ("graphile_worker", "equal") => run_graphile(url, s, Graphile::Equal).await,
        ("graphile_worker", "direct") => run_graphile(url, s, Graphile::Direct).await,
        ("apalis", "recipe") => run_apalis(url, s, 100).await,
        ("apalis", "equal") => run_apalis(url, s, s.claim).await,
        ("apalis", "default") => {
            run_apalis(url, s, apalis_postgres::Config::default().batch_size).await
        }
        ("awa", "recipe") => run_awa(url, s, None).await,
        ("awa", "equal") => run_awa(url, s, Some(s.claim)).await,
        ("sqlxmq", "") => run_sqlxmq(url, s).await,
        ("underway", "") => run_underway(url, s).await,
        ("floor", n) => run_floor(url, s, batch(n)?, false).await,
        ("floor2", n) => run_floor(url, s, batch(n)?, true).await,
        ("store", n) => run_store(url, s, batch(n)?).await,
        ("held", n) => run_held(url, s, batch(n)?, Exclude::None).await,
        ("heldgin", n) => run_held(url, s, batch(n)?, Exclude::Gin).await,
        ("heldrows", n) => run_held(url, s, batch(n)?, Exclude::Rows).await,
        ("heldhash", n) => run_held(url, s, batch(n)?, Exclude::Hash).await,
        _ => Err(anyhow::anyhow!(
            "unknown system {sys}: iterjob[:B], graphile_worker:recipe|equal|direct, apalis:recipe|equal|default, awa:recipe|equal, sqlxmq, underway, floor:B, floor2:B, store:B, held:B, heldgin:B, heldrows:B, heldhash:B (B a number or `claim`)"
        )),
    }
}

/// `ANALYZE` of the whole database, run for every system after its enqueue and
/// before its worker starts (not counted in either time): this server runs with
/// autovacuum off, and a queue's claim planned without statistics is a different
/// benchmark. iterjob's own `job_insert_many` also analyzes after a large enqueue
/// (that part is its enqueue time).
async fn analyze(url: &str) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    conn.execute("ANALYZE").await?;
    conn.close().await?;
    Ok(())
}

async fn throughput(cli: &Cli, systems: &[String], rounds: usize, s: &Settings) -> Result<()> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "one-item jobs: {} jobs, {} rounds, concurrency {}, poll {:?}, pool {} connections, iterjob's mean claim size (`equal`, floor:claim) {}; cores {}; loadavg {}",
        s.jobs,
        rounds,
        s.concurrency,
        s.poll,
        s.pool,
        s.claim,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.trim()
    );
    let mut results: BTreeMap<String, Vec<(Sample, f64)>> = BTreeMap::new();
    // work-off jobs/s by round, for the per-round ratios
    let mut by_round: Vec<BTreeMap<String, f64>> = Vec::new();
    // the worker's mean claim size in each round (`iterjob` at its defaults)
    let mut claim_sizes: Vec<f64> = Vec::new();
    for round in 1..=rounds {
        let mut this_round = BTreeMap::new();
        // rotate the order each round so no system always goes first
        let mut order: Vec<&String> = systems.iter().collect();
        order.rotate_left((round - 1) % systems.len().max(1));
        for sys in order {
            let db = format!("peers_{}", sys.replace(':', "_"));
            let url = cli.create_db(&db).await?;
            DONE.store(0, Ordering::SeqCst);
            let r = run_system(&url, s, sys).await;
            let claim_size = match (sys.starts_with("iterjob"), &r) {
                (true, Ok(_)) => Some(mean_claim(&url).await?),
                _ => None,
            };
            // let background tasks of the stopped worker wind down (closed
            // connections flush their statistics), then count transactions
            tokio::time::sleep(Duration::from_millis(500)).await;
            let xacts_after = match sqlx::PgPool::connect(&url).await {
                Ok(p) => {
                    let x = xacts(&p).await.unwrap_or(0);
                    p.close().await;
                    x
                }
                Err(_) => 0,
            };
            cli.drop_db(&db).await?;
            match r {
                Ok(sample) => {
                    let per_job = (xacts_after - sample.xacts_before) as f64 / s.jobs as f64;
                    let rate = s.jobs as f64 / sample.workoff.as_secs_f64();
                    println!(
                        "round {round} {sys:>22}: enqueue {:>8.1} ms ({:>8.0} jobs/s)   work-off {:>8.1} ms ({:>7.0} jobs/s; handler done at {:.1} ms)   ~{:.2} transactions/job",
                        ms(sample.enqueue),
                        s.jobs as f64 / sample.enqueue.as_secs_f64(),
                        ms(sample.workoff),
                        rate,
                        ms(sample.handled),
                        per_job,
                    );
                    if let Some(size) = claim_size {
                        println!("round {round} {sys:>22}: mean claim {size:.1} jobs");
                        if sys == "iterjob" {
                            claim_sizes.push(size);
                        }
                    }
                    this_round.insert(sys.clone(), rate);
                    results
                        .entry(sys.clone())
                        .or_default()
                        .push((sample, per_job));
                }
                Err(e) => println!("round {round} {sys:>22}: FAILED: {e:#}"),
            }
        }
        by_round.push(this_round);
    }
    if !claim_sizes.is_empty() {
        claim_sizes.sort_by(f64::total_cmp);
        let mean = claim_sizes[claim_sizes.len() / 2];
        println!(
            "\niterjob's mean claim, median over its rounds: {mean:.1} jobs; `equal` and floor:claim used {}",
            s.claim
        );
        if (s.claim as f64 - mean).abs() >= mean / 4.0 {
            println!(
                "WARNING: the `equal` claim size ({}) is a quarter or more off what the worker claimed ({mean:.0}): \
                 run again with --claim {}",
                s.claim,
                mean.round()
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nmedians over {rounds} rounds (loadavg at end {}):",
        load.trim()
    );
    let med = |v: &[(Sample, f64)], f: fn(&Sample) -> Duration| {
        let mut d: Vec<Duration> = v.iter().map(|(x, _)| f(x)).collect();
        d.sort();
        d[d.len() / 2]
    };
    let med_tx = |v: &[(Sample, f64)]| {
        let mut d: Vec<f64> = v.iter().map(|(_, t)| *t).collect();
        d.sort_by(|a, b| a.total_cmp(b));
        d[d.len() / 2]
    };
    let base = results
        .get("iterjob")
        .map(|v| s.jobs as f64 / med(v, |x| x.workoff).as_secs_f64());
    println!(
        "| system | enqueue median | enqueue jobs/s | work-off median | work-off jobs/s | iterjob work-off ÷ this | transactions/job |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for sys in systems {
        let Some(v) = results.get(sys) else { continue };
        let e = med(v, |x| x.enqueue);
        let w = med(v, |x| x.workoff);
        let ejs = s.jobs as f64 / e.as_secs_f64();
        let wjs = s.jobs as f64 / w.as_secs_f64();
        // no iterjob in the run: no ratio, rather than NaN
        let ratio = base.map_or_else(|| "—".to_string(), |bw| format!("{:.2}×", bw / wjs));
        println!(
            "| {sys} | {:.0} ms | {:.0} | {:.0} ms | {:.0} | {ratio} | {:.2} |",
            ms(e),
            ejs,
            ms(w),
            wjs,
            med_tx(v)
        );
    }
    // per round: iterjob against the best peer at its recipe, and against the floor
    // at iterjob's claim size, each measured in the same round
    let peer = |name: &str| {
        !name.starts_with("iterjob")
            && !name.starts_with("floor")
            && !name.starts_with("store")
            && !name.starts_with("held")
    };
    let mut best_ratios = Vec::new();
    let mut floor_ratios = Vec::new();
    for (i, r) in by_round.iter().enumerate() {
        let Some(ours) = r.get("iterjob") else {
            continue;
        };
        let best = r
            .iter()
            .filter(|(k, _)| peer(k) && !k.ends_with(":equal"))
            .max_by(|a, b| a.1.total_cmp(b.1));
        let floor = r.get("floor:claim");
        let mut line = format!("round {}: iterjob {ours:.0} jobs/s", i + 1);
        if let Some((name, rate)) = best {
            line += &format!("; best peer {name} {rate:.0} → {:.2}×", ours / rate);
            best_ratios.push(ours / rate);
        }
        if let Some(f) = floor {
            line += &format!(
                "; floor at claim size {} {f:.0} → {:.2}×",
                s.claim,
                ours / f
            );
            floor_ratios.push(ours / f);
        }
        println!("{line}");
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied()
    };
    if let Some(m) = median(best_ratios) {
        println!("median per-round ratio, iterjob ÷ best peer (own recipe or default): {m:.2}×");
    }
    if let Some(m) = median(floor_ratios) {
        println!("median per-round ratio, iterjob ÷ floor at its claim size: {m:.2}×");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until every handler ran, then until `remaining` (a SQL count of unfinished
/// jobs) reaches zero. Returns (handled, done), both from `start`.
async fn wait_done(
    start: Instant,
    s: &Settings,
    pool: &sqlx::PgPool,
    remaining: &str,
) -> Result<(Duration, Duration)> {
    let n = s.jobs as u64;
    loop {
        if DONE.load(Ordering::Relaxed) >= n {
            break;
        }
        if start.elapsed() > s.timeout {
            bail!(
                "timed out: {} of {} handled",
                DONE.load(Ordering::Relaxed),
                n
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled = start.elapsed();
    loop {
        let left: i64 = sqlx::query_scalar(remaining).fetch_one(pool).await?;
        if left <= 0 {
            break;
        }
        if start.elapsed() > s.timeout {
            bail!("timed out: {left} jobs not finished in the database");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((handled, start.elapsed()))
}

// --- iterjob ---------------------------------------------------------------

mod ij {
    use super::*;
    use iterjob::enumerator::{self, Enumerator};
    use iterjob::{Job, JobContext, JobError};

    pub struct OneItem;

    impl Job for OneItem {
        const KIND: &'static str = "one_item";
        type Params = u32;
        type Cursor = i64;
        type Item = i64;

        fn enumerate(
            &self,
            _p: &u32,
            cursor: Option<i64>,
        ) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..1, cursor))
        }

        async fn process(&self, _ctx: &JobContext<u32>, _item: i64) -> Result<(), JobError> {
            DONE.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// The worker as it comes (`WorkerConfig::default()`), at the run's concurrency
/// and poll interval. `prefetch`: `WorkerConfig::prefetch` when not the default
/// (`iterjob:B` sets it to B − concurrency: the least held ahead, so the smallest
/// claim of a busy worker is B; the worker sizes bigger claims itself).
async fn run_iterjob(url: &str, s: &Settings, prefetch: Option<usize>) -> Result<Sample> {
    use iterjob::{Registry, Store, Worker, WorkerConfig};
    let (store, enqueue) = iterjob_enqueue(url, s, s.pool).await?;

    let mut config = WorkerConfig::default();
    config.concurrency = s.concurrency;
    config.poll_interval = s.poll;
    if let Some(prefetch) = prefetch {
        config.prefetch = prefetch;
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        Registry::new().with(ij::OneItem),
        config,
    )?);
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let w = Arc::clone(&worker);
    let handle = tokio::spawn(async move { w.run().await });
    let res = wait_done(
        start,
        s,
        &check,
        "SELECT count(*) FROM iterjob.jobs WHERE state <> 'completed'",
    )
    .await;
    worker.shutdown_token().cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    check.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- apalis ----------------------------------------------------------------

async fn apalis_noop(_item: u32) -> Result<(), apalis::prelude::BoxDynError> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// apalis-postgres fetches `batch` tasks per poll (`Config::batch_size`, default
/// 10); its worker loop handles a batch before fetching the next.
async fn run_apalis(url: &str, s: &Settings, batch: usize) -> Result<Sample> {
    use apalis::prelude::*;
    use apalis_postgres::{Config, PgPool, PostgresStorage, Pubsub};
    let pool: PgPool = sqlx09::postgres::PgPoolOptions::new()
        .max_connections(s.pool)
        .connect(url)
        .await?;
    PostgresStorage::setup(&pool).await?;
    let queue = "bench";
    let tasks: Vec<apalis_postgres::PgTask> = (0..s.jobs as u32)
        .map(|i| TaskBuilder::new(serde_json::to_vec(&i).unwrap()).build())
        .collect();
    let t = Instant::now();
    {
        let mut tx = pool.begin().await?;
        apalis_postgres::queries::push_tasks(&mut *tx, queue, tasks).await?;
        tx.commit().await?;
    }
    let enqueue = t.elapsed();
    analyze(url).await?;

    let config = Config::default().queue(queue).batch_size(batch);
    let strategy = Strategy::new()
        .stream(Pubsub::new(pool.clone(), queue.to_string()))
        .interval(s.poll);
    let backend = PostgresStorage::<u32>::new(&pool)
        .with_config(config)
        .poll_with_strategy(strategy);
    let worker = WorkerBuilder::new("peers-apalis")
        .backend(backend)
        .concurrency(s.concurrency)
        .parallelize(tokio::spawn)
        .build(apalis_noop);
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    // the worker's future is not Send (handler lifetimes), so it is driven here,
    // beside the wait, rather than spawned; dropping it stops the worker
    let res = tokio::select! {
        r = worker.run() => Err(anyhow::anyhow!("apalis worker stopped early: {r:?}")),
        r = wait_done(
            start,
            s,
            &check,
            "SELECT count(*) FROM apalis.jobs WHERE status <> 'Done'",
        ) => r,
    };
    check.close().await;
    pool.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- graphile_worker -------------------------------------------------------

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct GwNoop {
    i: u32,
}

impl graphile_worker::TaskHandler for GwNoop {
    const IDENTIFIER: &'static str = "noop";

    async fn run(
        self,
        _ctx: graphile_worker::WorkerContext,
    ) -> impl graphile_worker::IntoTaskHandlerResult {
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok::<(), String>(())
    }
}

/// graphile_worker's modes.
#[derive(Clone, Copy, Debug)]
enum Graphile {
    /// Its documented throughput setting: the local queue at its default size (100
    /// jobs fetched per query) and completions batched (`complete_job_batch_delay`,
    /// "a small value like 1-5ms is recommended": 5 ms).
    Recipe,
    /// The same, with the local queue at iterjob's claim size.
    Equal,
    /// Its default: each slot fetches one job per wake-up, completes it alone.
    Direct,
}

async fn run_graphile(url: &str, s: &Settings, mode: Graphile) -> Result<Sample> {
    use graphile_worker::{JobSpec, LocalQueueConfig, RawJobSpec, WorkerOptions};
    let mut options = WorkerOptions::default();
    match mode {
        Graphile::Recipe => {
            options = options
                .local_queue(LocalQueueConfig::default())
                .complete_job_batch_delay(Duration::from_millis(5));
        }
        Graphile::Equal => {
            options = options
                .local_queue(LocalQueueConfig::default().with_size(s.claim))
                .complete_job_batch_delay(Duration::from_millis(5));
        }
        Graphile::Direct => {}
    }
    let worker = options
        .concurrency(s.concurrency)
        .poll_interval(s.poll)
        .schema("graphile_worker")
        .database_url(url)
        .max_pg_conn(s.pool)
        .use_notification_delivery(true)
        .listen_os_shutdown_signals(false)
        .define_job::<GwNoop>()
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("graphile init: {e:?}"))?;
    let worker = Arc::new(worker);
    let jobs: Vec<RawJobSpec> = (0..s.jobs as u32)
        .map(|i| RawJobSpec {
            identifier: "noop".to_string(),
            payload: serde_json::json!({ "i": i }),
            spec: JobSpec::default(),
        })
        .collect();
    let utils = worker.create_utils();
    let t = Instant::now();
    utils
        .add_raw_jobs(&jobs)
        .await
        .map_err(|e| anyhow::anyhow!("graphile add_raw_jobs: {e:?}"))?;
    let enqueue = t.elapsed();
    analyze(url).await?;
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let w = Arc::clone(&worker);
    let handle = tokio::spawn(async move { w.run().await });
    let res = wait_done(
        start,
        s,
        &check,
        "SELECT count(*) FROM graphile_worker._private_jobs",
    )
    .await;
    worker.request_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    check.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- underway --------------------------------------------------------------

struct UwNoop;

impl underway::Task for UwNoop {
    type Input = u32;
    type Output = ();

    async fn execute(
        &self,
        _tx: sqlx::Transaction<'_, sqlx::Postgres>,
        _input: u32,
    ) -> underway::task::Result<()> {
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn run_underway(url: &str, s: &Settings) -> Result<Sample> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(s.pool)
        .connect(url)
        .await?;
    underway::run_migrations(&pool).await?;
    let queue = underway::Queue::builder()
        .name("bench")
        .pool(pool.clone())
        .build()
        .await?;
    let inputs: Vec<u32> = (0..s.jobs as u32).collect();
    let t = Instant::now();
    queue.enqueue_multi(&pool, &UwNoop, &inputs).await?;
    let enqueue = t.elapsed();
    analyze(url).await?;
    let mut worker = underway::Worker::new(Arc::new(queue), UwNoop);
    worker.set_concurrency_limit(s.concurrency);
    let period = jiff::Span::new().milliseconds(s.poll.as_millis() as i64);
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let worker = Arc::new(worker);
    let w = Arc::clone(&worker);
    let handle = tokio::spawn(async move { w.run_every(period).await });
    let res = wait_done(
        start,
        s,
        &check,
        "SELECT count(*) FROM underway.task WHERE state <> 'succeeded'",
    )
    .await;
    worker.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    check.close().await;
    pool.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- sqlxmq ----------------------------------------------------------------

#[sqlxmq::job]
async fn sqlxmq_noop(
    mut job: sqlxmq::CurrentJob,
) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
    DONE.fetch_add(1, Ordering::Relaxed);
    job.complete().await?;
    Ok(())
}

/// The migrations folder of the sqlxmq package in cargo's registry (or
/// `SQLXMQ_MIGRATIONS`).
fn sqlxmq_migrations_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("SQLXMQ_MIGRATIONS") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    for index in std::fs::read_dir(home.join("registry/src"))? {
        let dir = index?.path().join("sqlxmq-0.6.0/migrations");
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!(
        "sqlxmq-0.6.0 not found in cargo registry; build this package first, or set SQLXMQ_MIGRATIONS"
    )
}

async fn run_sqlxmq(url: &str, s: &Settings) -> Result<Sample> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(s.pool)
        .connect(url)
        .await?;
    // sqlxmq ships its schema as sqlx migrations inside its crate package; apply the
    // `.up.sql` files of the version cargo downloaded, in order
    let dir = sqlxmq_migrations_dir()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".up.sql"))
        .collect();
    files.sort();
    for f in files {
        let sql = std::fs::read_to_string(&f)?;
        sqlx::raw_sql(&sql)
            .execute(&pool)
            .await
            .with_context(|| format!("{}", f.display()))?;
    }
    let t = Instant::now();
    {
        // no batch API: one mq_insert per job, in one transaction
        let mut tx = pool.begin().await?;
        for i in 0..s.jobs as u32 {
            sqlxmq_noop.builder().set_json(&i)?.spawn(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let enqueue = t.elapsed();
    analyze(url).await?;
    let registry = sqlxmq::JobRegistry::new(&[sqlxmq_noop]);
    let mut runner = registry.runner(&pool);
    // "the difference between the min and max will dictate the maximum batch size
    // which can be received: larger batch sizes are more efficient" (its docs); its
    // default is (16, 32): min at half the max, kept at this concurrency
    runner.set_concurrency(s.concurrency / 2, s.concurrency);
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let mut handle = runner.run().await?;
    let res = wait_done(
        start,
        s,
        &check,
        "SELECT count(*) FROM mq_msgs WHERE id <> '00000000-0000-0000-0000-000000000000'",
    )
    .await;
    handle.stop().await;
    check.close().await;
    pool.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- awa -------------------------------------------------------------------

#[derive(serde::Serialize, serde::Deserialize, awa::JobArgs)]
struct AwaNoop {
    i: u32,
}

/// awa at `claim_batch_size` = `claim` (None: its default, 512; a claim never
/// takes more than the free worker permits).
async fn run_awa(url: &str, s: &Settings, claim: Option<usize>) -> Result<Sample> {
    use awa::{InsertOpts, JobResult, QueueConfig};
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(s.pool)
        .connect(url)
        .await?;
    awa::migrations::run(&pool).await?;
    let queue = "bench";
    let params: Vec<awa::InsertParams> = (0..s.jobs as u32)
        .map(|i| {
            awa::insert::params_with(
                &AwaNoop { i },
                InsertOpts {
                    queue: queue.into(),
                    ..Default::default()
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    {
        // insert_many binds 12 parameters per job: at most 5,000 jobs per statement
        // (PostgreSQL's 65,535-parameter limit), so chunks in one transaction
        let mut tx = pool.begin().await?;
        for chunk in params.chunks(5_000) {
            awa::insert_many(&mut *tx, chunk).await?;
        }
        tx.commit().await?;
    }
    let enqueue = t.elapsed();
    analyze(url).await?;
    let defaults = QueueConfig::default();
    let client = awa::Client::builder(pool.clone())
        .queue(
            queue,
            QueueConfig {
                max_workers: s.concurrency as u32,
                poll_interval: s.poll,
                claim_batch_size: claim.unwrap_or(defaults.claim_batch_size),
                ..defaults
            },
        )
        .register::<AwaNoop, _, _>(|_args, _ctx| async move {
            DONE.fetch_add(1, Ordering::Relaxed);
            Ok(JobResult::Completed)
        })
        .build()?;
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    client.start().await?;
    // completion read directly (its `awa.jobs` view covers both of its storage
    // engines), not through `admin::state_counts`, whose counters lag
    let res = wait_done(
        start,
        s,
        &check,
        &format!(
            "SELECT {} - count(*) FROM awa.jobs WHERE state = 'completed'",
            s.jobs
        ),
    )
    .await;
    client.shutdown(Duration::from_secs(5)).await;
    check.close().await;
    pool.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

// --- the floor: the minimal SQL of a queue, from a minimal client ----------

/// What PostgreSQL itself does here: `concurrency` connections (sqlx, the driver
/// iterjob uses), each looping on one statement that claims up to `batch` queued
/// rows with `FOR UPDATE SKIP LOCKED` and marks them done; no worker, no lease, no
/// payload decoding. `two_phase`: the claim marks the rows running and returns
/// them, a second transaction marks them done, as a queue that survives a crash
/// between the two must.
async fn run_floor(url: &str, s: &Settings, batch: usize, two_phase: bool) -> Result<Sample> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(s.concurrency as u32)
        .connect(url)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE floor_jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'queued', args jsonb NOT NULL);
         CREATE INDEX floor_jobs_queued ON floor_jobs (id) WHERE state = 'queued';",
    )
    .execute(&pool)
    .await?;
    let args: Vec<serde_json::Value> = (0..s.jobs as u32).map(|i| serde_json::json!(i)).collect();
    let t = Instant::now();
    sqlx::query("INSERT INTO floor_jobs (args) SELECT * FROM unnest($1::jsonb[])")
        .bind(&args)
        .execute(&pool)
        .await?;
    let enqueue = t.elapsed();
    analyze(url).await?;
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..s.concurrency {
        let pool = pool.clone();
        clients.spawn(async move {
            loop {
                let n = if two_phase {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "UPDATE floor_jobs f SET state = 'running' FROM (
                             SELECT id FROM floor_jobs WHERE state = 'queued'
                             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) c
                         WHERE f.id = c.id RETURNING f.id",
                    )
                    .bind(batch as i64)
                    .fetch_all(&pool)
                    .await?;
                    if !ids.is_empty() {
                        sqlx::query("UPDATE floor_jobs SET state = 'done' WHERE id = ANY($1)")
                            .bind(&ids)
                            .execute(&pool)
                            .await?;
                    }
                    ids.len() as u64
                } else {
                    sqlx::query(
                        "UPDATE floor_jobs f SET state = 'done' FROM (
                             SELECT id FROM floor_jobs WHERE state = 'queued'
                             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) c
                         WHERE f.id = c.id",
                    )
                    .bind(batch as i64)
                    .execute(&pool)
                    .await?
                    .rows_affected()
                };
                DONE.fetch_add(n, Ordering::Relaxed);
                if n == 0 {
                    return anyhow::Ok(());
                }
            }
        });
    }
    let sample = clients_done(
        start,
        s,
        &check,
        "SELECT count(*) FROM floor_jobs WHERE state <> 'done'",
        clients,
        enqueue,
        xacts_before,
    )
    .await?;
    pool.close().await;
    Ok(sample)
}

/// For the systems driven by the harness's own client tasks (the floors, `store:B`, `held:B`):
/// waits until the pending count (`pending_sql`) reaches zero, then for every task
/// (an error of any fails the run), closes `check`, and gives the run's sample.
async fn clients_done(
    start: Instant,
    s: &Settings,
    check: &sqlx::PgPool,
    pending_sql: &str,
    mut clients: tokio::task::JoinSet<Result<()>>,
    enqueue: Duration,
    xacts_before: i64,
) -> Result<Sample> {
    let res = wait_done(start, s, check, pending_sql).await;
    while let Some(r) = clients.join_next().await {
        r??;
    }
    check.close().await;
    let (handled, workoff) = res?;
    Ok(Sample {
        enqueue,
        workoff,
        handled,
        xacts_before,
    })
}

/// What is left of iterjob's jobs in a run (the systems on its schema).
const ITERJOB_PENDING: &str = "SELECT count(*) FROM iterjob.jobs WHERE state <> 'completed'";

/// The run's one-item jobs enqueued through `PgStore::job_insert_many` (a pool of
/// `pool` connections), then `ANALYZE`: the store and the enqueue's time.
async fn iterjob_enqueue(
    url: &str,
    s: &Settings,
    pool: u32,
) -> Result<(iterjob_postgres::PgStore, Duration)> {
    use iterjob::{NewJob, Store};
    use iterjob_postgres::{PgOptions, PgStore};
    let store = PgStore::connect_with(PgOptions::new(url).max_connections(pool)).await?;
    let jobs: Vec<NewJob> = (0..s.jobs as u32)
        .map(|i| NewJob::of(&ij::OneItem, &i))
        .collect::<iterjob::Result<_>>()?;
    let t = Instant::now();
    store.job_insert_many(&jobs).await?;
    let enqueue = t.elapsed();
    analyze(url).await?;
    Ok((store, enqueue))
}

/// iterjob's store without its worker: `concurrency` tasks, each looping on
/// `Store::job_claim` of `batch` jobs and one `Store::job_release_many` completing
/// them all (with progress, as a run of a one-item job releases). What the worker
/// adds to this (deciding claim sizes, running, batching releases) is its own cost;
/// this is the most iterjob's statements allow on this server.
async fn run_store(url: &str, s: &Settings, batch: usize) -> Result<Sample> {
    use iterjob::Store;
    use iterjob::store::{ClaimRequest, Outcome, Progress, Release};
    let (store, enqueue) = iterjob_enqueue(url, s, s.pool).await?;
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..s.concurrency {
        let store = store.clone();
        let request = ClaimRequest {
            worker_id: format!("store-bench-{c}"),
            queues: vec!["default".into()],
            kinds: vec![<ij::OneItem as iterjob::Job>::KIND.into()],
            limit: batch,
            lease: Duration::from_secs(30),
        };
        clients.spawn(async move {
            loop {
                let claimed = store.job_claim(&request).await?;
                if claimed.is_empty() {
                    return anyhow::Ok(());
                }
                let releases: Vec<Release> = claimed
                    .iter()
                    .map(|c| Release {
                        id: c.job.id,
                        token: c.token,
                        progress: Some(Progress {
                            cursor: Some(serde_json::json!(1)),
                            items_done: 1,
                            items_total: Some(1),
                            running_ms: 0,
                        }),
                        outcome: Outcome::Completed,
                    })
                    .collect();
                for r in store.job_release_many(&releases).await? {
                    r?;
                }
                DONE.fetch_add(claimed.len() as u64, Ordering::Relaxed);
            }
        });
    }
    let sample = clients_done(
        start,
        s,
        &check,
        ITERJOB_PENDING,
        clients,
        enqueue,
        xacts_before,
    )
    .await?;
    store.close().await;
    Ok(sample)
}

/// How a held-lock claim keeps a job that crashed its worker from being claimed
/// again before a rescuer has counted the crash (docs/held-lock-claims.md, "Poison
/// jobs"): the crash record is what names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exclude {
    /// Not at all: the claim does not look at the records.
    None,
    /// The records' id arrays under a GIN index; the claim skips jobs any record
    /// names (`ids @> ARRAY[id]`).
    Gin,
    /// One row per held job in `held_jobs` (primary key `job_id`), written with the
    /// record and deleted with it; the claim skips jobs that have one.
    Rows,
    /// No index: the claim hashes every id the records name, once per claim
    /// (`id NOT IN (SELECT unnest(ids) …)`, a hashed subplan), and skips those.
    Hash,
}

/// A held-lock claim protocol, its statements only, on iterjob's own schema and
/// jobs (enqueued by `PgStore::job_insert_many`): what a claim design that writes no
/// lease would cost. `concurrency` tasks, each looping on:
/// 1. on its own connection, `BEGIN`, then lock up to `batch` claimable jobs (the
///    store's claim filter and order, `FOR UPDATE SKIP LOCKED`, whole rows read and
///    decoded as the store decodes a claim) and a transaction-level advisory lock
///    naming the claim (by which a rescuer would tell a live holder from a dead one);
/// 2. on another pooled connection, a committed record of the locked ids
///    (`held_claims`, asynchronous commit), the trace a crash would leave: a
///    rolled-back claim leaves none, and a job that kills its worker must still
///    have its crashes counted;
/// 3. on the first connection, one statement completing them all (the release's
///    progress columns, the run counted) and deleting the record, then `COMMIT`
///    (synchronous, as a release is).
///
/// Each job's row is written once (at completion) instead of twice (claim, release).
async fn run_held(url: &str, s: &Settings, batch: usize, exclude: Exclude) -> Result<Sample> {
    use iterjob_postgres::PgDialect;
    let (store, enqueue) = iterjob_enqueue(url, s, 2).await?;
    store.close().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(s.pool)
        .connect(url)
        .await?;
    sqlx::query(
        "CREATE TABLE iterjob.held_claims (key bigint PRIMARY KEY, worker_id text NOT NULL, \
         ids bigint[] NOT NULL, created_at bigint NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let skip = match exclude {
        Exclude::None => "",
        Exclude::Gin => {
            sqlx::query("CREATE INDEX held_claims_ids ON iterjob.held_claims USING gin (ids)")
                .execute(&pool)
                .await?;
            "AND NOT EXISTS (SELECT 1 FROM iterjob.held_claims AS c WHERE c.ids @> ARRAY[j.id])"
        }
        Exclude::Rows => {
            sqlx::query(
                "CREATE TABLE iterjob.held_jobs (job_id bigint PRIMARY KEY, claim_key bigint NOT NULL)",
            )
            .execute(&pool)
            .await?;
            "AND NOT EXISTS (SELECT 1 FROM iterjob.held_jobs AS h WHERE h.job_id = j.id)"
        }
        Exclude::Hash => "AND j.id NOT IN (SELECT unnest(c.ids) FROM iterjob.held_claims AS c)",
    };
    let (rows_in, rows_out) = if exclude == Exclude::Rows {
        (
            ", rows AS (INSERT INTO iterjob.held_jobs (job_id, claim_key) SELECT unnest($3::bigint[]), $1)",
            ", rows_gone AS (DELETE FROM iterjob.held_jobs WHERE job_id = ANY($1::bigint[]))",
        )
    } else {
        ("", "")
    };
    let now = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    let claim = format!(
        "WITH now AS MATERIALIZED (SELECT {now} AS ms, pg_advisory_xact_lock($3) AS held) \
         SELECT j.* FROM iterjob.jobs AS j \
         WHERE j.state IN ('queued', 'retrying') AND j.run_at <= (SELECT ms FROM now) \
           AND j.queue = ANY(ARRAY(SELECT q FROM unnest($1::text[]) AS q \
                                   EXCEPT SELECT queue FROM iterjob.queue_pauses)) \
           AND j.kind = ANY($2::text[]) {skip} \
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT {batch} FOR UPDATE SKIP LOCKED"
    );
    let record = format!(
        "WITH s AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS c){rows_in} \
         INSERT INTO iterjob.held_claims (key, worker_id, ids, created_at) \
         SELECT $1, $2, $3, {now} FROM s"
    );
    let complete = format!(
        "WITH now AS MATERIALIZED (SELECT {now} AS ms), \
         gone AS (DELETE FROM iterjob.held_claims WHERE key = $6){rows_out}, \
         r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], \
                                    $5::bigint[]) AS r(id, cursor, items_done, items_total, running_ms)) \
         UPDATE iterjob.jobs AS j \
         SET cursor = r.cursor::jsonb, \
             crashes = CASE WHEN r.items_done > j.items_done THEN 0 ELSE j.crashes END, \
             items_done = r.items_done, items_total = r.items_total, running_ms = r.running_ms, \
             checkpointed_at = now.ms, state = 'completed', runs = j.runs + 1, \
             started_at = COALESCE(j.started_at, now.ms), finished_at = now.ms, \
             pause_requested = FALSE, cancel_requested = FALSE, split_requested = FALSE \
         FROM r, now WHERE j.id = r.id AND j.state IN ('queued', 'retrying')"
    );
    let check = small_pool(url).await?;
    let xacts_before = xacts(&check).await?;
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    let queues = vec!["default".to_string()];
    let kinds = vec![<ij::OneItem as iterjob::Job>::KIND.to_string()];
    for c in 0..s.concurrency {
        let (pool, claim, record, complete) = (
            pool.clone(),
            claim.clone(),
            record.clone(),
            complete.clone(),
        );
        let (queues, kinds) = (queues.clone(), kinds.clone());
        clients.spawn(async move {
            let worker = format!("held-bench-{c}");
            for n in 0_i64.. {
                let key = ((c as i64) << 40) | n;
                let mut tx = pool.begin().await?;
                let rows = sqlx::query(&claim)
                    .bind(&queues)
                    .bind(&kinds)
                    .bind(key)
                    .fetch_all(&mut *tx)
                    .await?;
                let claimed = rows
                    .iter()
                    .map(iterjob_sql::record::job_record::<PgDialect>)
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(anyhow::Error::msg)?;
                if claimed.is_empty() {
                    tx.rollback().await?;
                    return anyhow::Ok(());
                }
                let ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
                sqlx::query(&record)
                    .bind(key)
                    .bind(&worker)
                    .bind(&ids)
                    .execute(&pool)
                    .await?;
                // the runs: one-item jobs, each ending with its progress
                let cursors: Vec<String> = claimed.iter().map(|_| "1".to_string()).collect();
                let ones: Vec<i64> = vec![1; ids.len()];
                let zeros: Vec<i64> = vec![0; ids.len()];
                let done = sqlx::query(&complete)
                    .bind(&ids)
                    .bind(&cursors)
                    .bind(&ones)
                    .bind(&ones)
                    .bind(&zeros)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                anyhow::ensure!(
                    done == ids.len() as u64,
                    "held: completed {done} of {} locked jobs",
                    ids.len()
                );
                tx.commit().await?;
                DONE.fetch_add(claimed.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    let sample = clients_done(
        start,
        s,
        &check,
        ITERJOB_PENDING,
        clients,
        enqueue,
        xacts_before,
    )
    .await?;
    pool.close().await;
    Ok(sample)
}

// ---------------------------------------------------------------------------
// 2. checkpoint cost

async fn checkpoint(cli: &Cli, iterations: usize) -> Result<()> {
    use iterjob::store::{ClaimRequest, Progress};
    use iterjob::{NewJob, Store};
    use iterjob_postgres::PgStore;
    let db = "peers_checkpoint";
    let url = cli.create_db(db).await?;
    let res = async {
        let store = PgStore::connect(&url).await?;
        store
            .job_insert(&NewJob::new("walk", serde_json::json!(null)))
            .await?;
        let claimed = store
            .job_claim(&ClaimRequest {
                worker_id: "peers".into(),
                queues: vec!["default".into()],
                kinds: vec!["walk".into()],
                limit: 1,
                lease: Duration::from_secs(30),
            })
            .await?;
        let c = claimed.into_iter().next().context("nothing claimed")?;
        let mut times = Vec::with_capacity(iterations);
        for i in 0..(iterations + 200) as u64 {
            let p = Progress {
                cursor: Some(serde_json::json!(i * 1000)),
                items_done: i * 1000,
                items_total: Some(10_000_000),
                running_ms: i,
            };
            let t = Instant::now();
            store
                .job_checkpoint(c.job.id, c.token, &p, Duration::from_secs(30))
                .await?;
            if i >= 200 {
                times.push(t.elapsed()); // the first 200 warm up the pool and the plan
            }
        }
        times.sort();
        let pct = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "job_checkpoint on PostgreSQL, {} iterations (after 200 warm-up), one job, sequential: median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms; loadavg {}",
            times.len(),
            ms(pct(0.5)),
            ms(pct(0.9)),
            ms(pct(0.99)),
            ms(*times.last().unwrap()),
            load.trim()
        );
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    cli.drop_db(db).await?;
    res
}

// ---------------------------------------------------------------------------
// 3. / 4. worker processes

fn worker_binary() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("peers-worker")
}

fn spawn_worker(url: &str, extra: &[&str], item_ms: u64) -> Result<Child> {
    let mut cmd = Command::new(worker_binary());
    cmd.arg("--database-url")
        .arg(url)
        .arg("worker")
        .arg("--concurrency")
        .arg("1")
        .arg("--poll-interval")
        .arg("100ms")
        .args(extra)
        .env("PEERS_ITEM_MS", item_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Ok(cmd.spawn()?)
}

#[derive(Debug, Clone)]
struct Row {
    state: String,
    items_done: i64,
    worker: Option<String>,
    run_token: Option<i64>,
}

async fn job_row(pool: &sqlx::PgPool, id: i64) -> Result<Row> {
    let (state, items_done, worker, run_token): (String, i64, Option<String>, Option<i64>) =
        sqlx::query_as(
            "SELECT state, items_done, worker_id, run_token FROM iterjob.jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(Row {
        state,
        items_done,
        worker,
        run_token,
    })
}

async fn wait_row(
    pool: &sqlx::PgPool,
    id: i64,
    limit: Duration,
    mut pred: impl FnMut(&Row) -> bool,
) -> Result<(Row, Instant)> {
    let start = Instant::now();
    loop {
        let row = job_row(pool, id).await?;
        if pred(&row) {
            return Ok((row, Instant::now()));
        }
        if start.elapsed() > limit {
            bail!("timed out waiting; last row {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process by its pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

async fn setup_long_job(cli: &Cli, db: &str) -> Result<(String, sqlx::PgPool, i64)> {
    use iterjob::{NewJob, Store};
    let url = cli.create_db(db).await?;
    let store = iterjob_postgres::PgStore::connect(&url).await?;
    let id = store
        .job_insert(&NewJob::new("slow_items", serde_json::json!(1_000_000)))
        .await?;
    store.close().await;
    let pool = small_pool(&url).await?;
    Ok((url, pool, id))
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v[v.len() / 2];
    format!(
        "median {:.1} ms, min {:.1} ms, max {:.1} ms (n = {})",
        med,
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

async fn sigterm(cli: &Cli, repeats: usize, item_ms: u64) -> Result<()> {
    let db = "peers_sigterm";
    let (url, pool, id) = setup_long_job(cli, db).await?;
    let res = async {
        let mut lat = Vec::new();
        let mut exits = Vec::new();
        for r in 0..repeats {
            let mut child = spawn_worker(&url, &[], item_ms)?;
            // running, and past its first checkpoint (so items are flowing)
            let (before, _) = wait_row(&pool, id, Duration::from_secs(20), |row| {
                row.state == "running"
            })
            .await?;
            // a moment into the run, off any checkpoint tick
            tokio::time::sleep(Duration::from_millis(1200 + 37 * r as u64)).await;
            let t0 = Instant::now();
            signal(&child, libc::SIGTERM);
            let (row, t1) = wait_row(&pool, id, Duration::from_secs(40), |row| {
                row.state == "queued"
            })
            .await?;
            let l = ms(t1 - t0);
            // process exit
            let exit_ms = loop {
                if child.try_wait()?.is_some() {
                    break ms(t0.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            println!(
                "sigterm run {}: released (queued) after {:.1} ms; process exited after {:.1} ms; items_done {} -> {}",
                r + 1,
                l,
                exit_ms,
                before.items_done,
                row.items_done
            );
            lat.push(l);
            exits.push(exit_ms);
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "SIGTERM → queued ({} ms items): {}",
            item_ms,
            stats(&mut lat)
        );
        println!("SIGTERM → process exit: {}", stats(&mut exits));
        println!("target: ≤ one item + 100 ms = {} ms; loadavg {}", item_ms + 100, load.trim());
        anyhow::Ok(())
    }
    .await;
    pool.close().await;
    cli.drop_db(db).await?;
    res
}

async fn kill(cli: &Cli, repeats: usize, leases: &str, item_ms: u64) -> Result<()> {
    for lease in leases.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        let lease_d = humantime_ms(lease)?;
        // heartbeat well under the lease (the CLI default 5 s is too long for 2 s)
        let heartbeat = format!("{}ms", (lease_d / 4).clamp(100, 5000));
        let db = "peers_kill";
        let (url, pool, id) = setup_long_job(cli, db).await?;
        let extra: Vec<&str> = vec!["--lease", lease, "--heartbeat-interval", &heartbeat];
        let res = async {
            let mut running = Vec::new();
            let mut advancing = Vec::new();
            for r in 0..repeats {
                let mut a = spawn_worker(&url, &extra, item_ms)?;
                let (_, _) = wait_row(&pool, id, Duration::from_secs(60), |row| {
                    row.state == "running"
                })
                .await?;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let before = job_row(&pool, id).await?;
                let t0 = Instant::now();
                signal(&a, libc::SIGKILL);
                a.wait()?;
                let mut b = spawn_worker(&url, &extra, item_ms)?;
                let old_token = before.run_token;
                let (row, t1) = wait_row(&pool, id, Duration::from_secs(120), |row| {
                    row.state == "running" && row.run_token != old_token
                })
                .await?;
                let done_then = row.items_done;
                let (row2, t2) = wait_row(&pool, id, Duration::from_secs(60), |row| {
                    row.items_done > done_then
                })
                .await?;
                println!(
                    "kill lease {lease} run {}: running again after {:.0} ms (worker {:?}), items_done advancing ({} -> {}) after {:.0} ms",
                    r + 1,
                    ms(t1 - t0),
                    row.worker,
                    done_then,
                    row2.items_done,
                    ms(t2 - t0)
                );
                running.push(ms(t1 - t0));
                advancing.push(ms(t2 - t0));
                // stop B cleanly so the job is free for the next repeat
                signal(&b, libc::SIGTERM);
                b.wait()?;
            }
            println!(
                "kill → running again (lease {lease}, heartbeat {heartbeat}, rescue interval lease/4 as the CLI sets it): {}",
                stats(&mut running)
            );
            println!(
                "kill → items_done advancing (lease {lease}): {}",
                stats(&mut advancing)
            );
            anyhow::Ok(())
        }
        .await;
        pool.close().await;
        cli.drop_db(db).await?;
        res?;
    }
    Ok(())
}

fn humantime_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("ms") {
        return Ok(v.parse()?);
    }
    if let Some(v) = s.strip_suffix('s') {
        return Ok(v.parse::<u64>()? * 1000);
    }
    if let Some(v) = s.strip_suffix('m') {
        return Ok(v.parse::<u64>()? * 60_000);
    }
    bail!("cannot parse duration {s}")
}
