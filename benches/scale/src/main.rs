//! `scale`: one PostgreSQL, many worker processes. One-item jobs worked off by P
//! processes, each a worker as it comes (`WorkerConfig::default()`, `PgOptions`
//! defaults unless `--pool`), directly or through a pooler; jobs/s, the claim round
//! trip's p50 and p99 (every claim of every process, from the worker's own
//! `iterjob_claim_seconds` histogram), and the server connections in use (sampled
//! from `pg_stat_activity`).
//!
//! ```text
//! cargo run --release -- run --processes 1,4,16,64 --jobs 20000
//! cargo run --release -- run --processes 1,4,16,64 --jobs 20000 \
//!     --worker-url 'postgres://postgres@127.0.0.1:6433/test?notify=false'
//! ```
//!
//! Each run: a fresh schema, N jobs enqueued through a direct connection, P children
//! started and connected (each prints `ready`), then all told `go` at once; the clock
//! runs from `go` until the jobs table counts no unfinished job.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_postgres::{PgOptions, PgStore};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs each process count in turn and prints a table.
    Run {
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        processes: Vec<usize>,
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Direct URL: schema setup, enqueue, the clock's count, pg_stat_activity.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        url: String,
        /// The workers' URL (default: `--url`), e.g. through PgBouncer.
        #[arg(long)]
        worker_url: Option<String>,
        /// Each worker's pool (default: PgOptions's, 10).
        #[arg(long)]
        pool: Option<u32>,
    },
    /// One worker process (started by `run`).
    Worker {
        #[arg(long)]
        url: String,
        #[arg(long)]
        schema: String,
        #[arg(long)]
        pool: Option<u32>,
    },
}

struct OneItem;

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
        Ok(())
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.cmd {
        Cmd::Run {
            processes,
            jobs,
            url,
            worker_url,
            pool,
        } => rt.block_on(run(&processes, jobs, &url, worker_url.as_deref(), pool)),
        Cmd::Worker { url, schema, pool } => rt.block_on(worker(&url, &schema, pool)),
    }
}

// --- the worker process ------------------------------------------------------

/// Claim round trips in microseconds, from the worker's `iterjob_claim_seconds`.
static CLAIMS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

struct ClaimTimes;

impl metrics::HistogramFn for ClaimTimes {
    fn record(&self, value: f64) {
        CLAIMS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((value * 1e6) as u64);
    }
}

/// Keeps `iterjob_claim_seconds`, ignores every other metric.
struct Recorder;

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if key.name() == "iterjob_claim_seconds" {
            metrics::Histogram::from_arc(Arc::new(ClaimTimes))
        } else {
            metrics::Histogram::noop()
        }
    }
}

fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

async fn worker(url: &str, schema: &str, pool: Option<u32>) -> Result<()> {
    // warnings and errors to stderr, prefixed by the process (`RUST_LOG` to change)
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    metrics::set_global_recorder(Recorder).map_err(|_| anyhow::anyhow!("recorder set twice"))?;
    let mut options = PgOptions::new(with_schema(url, schema)).migrate(false);
    if let Some(pool) = pool {
        options = options.max_connections(pool);
    }
    let store: Arc<dyn Store> = Arc::new(PgStore::connect_with(options).await?);
    let worker = Worker::new(
        store,
        Registry::new().with(OneItem),
        WorkerConfig::default(),
    )?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    if std::io::stdin().read_line(&mut go)? == 0 {
        // the driver is gone before saying go
        return Ok(());
    }
    let report = worker.run_until_idle().await?;
    let claims = std::mem::take(&mut *CLAIMS.lock().unwrap_or_else(|e| e.into_inner()));
    println!("{}", json!({ "runs": report.runs, "claims_us": claims }));
    Ok(())
}

// --- the driver ----------------------------------------------------------------

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(
    processes: &[usize],
    jobs: usize,
    url: &str,
    worker_url: Option<&str>,
    pool: Option<u32>,
) -> Result<()> {
    let worker_url = worker_url.unwrap_or(url);
    let timeout: u64 = std::env::var("SCALE_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "one-item jobs: {jobs} per run; workers at {worker_url}, pool {}; cores {}; loadavg {}",
        pool.map_or("default (10)".to_string(), |p| p.to_string()),
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:>9} {:>9} {:>12} {:>12} {:>9} {:>11} {:>11}",
        "processes", "jobs/s", "claim p50", "claim p99", "claims", "jobs/claim", "server conns"
    );
    let exe = std::env::current_exe()?;
    for &p in processes {
        let schema = format!("scale_{:016x}", rand::random::<u64>());
        let store = PgStore::connect_with(PgOptions::new(with_schema(url, &schema))).await?;
        let new: Vec<NewJob> = (0..jobs as u32)
            .map(|i| NewJob::of(&OneItem, &i))
            .collect::<iterjob::Result<_>>()?;
        store.job_insert_many(&new).await?;
        store.close().await;
        // the driver's own connections are named, and not counted
        let check = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                url.parse::<sqlx::postgres::PgConnectOptions>()?
                    .application_name("scale-driver"),
            )
            .await?;

        let mut children = Vec::with_capacity(p);
        for _ in 0..p {
            let mut cmd = Command::new(&exe);
            cmd.arg("worker")
                .arg("--url")
                .arg(worker_url)
                .arg("--schema")
                .arg(&schema)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if let Some(pool) = pool {
                cmd.arg("--pool").arg(pool.to_string());
            }
            children.push(cmd.spawn().context("spawning a worker")?);
        }
        let mut outs = Vec::with_capacity(p);
        let mut failed = 0;
        for child in &mut children {
            let mut out = BufReader::new(child.stdout.take().context("stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "ready" {
                failed += 1;
            }
            outs.push(out);
        }
        if failed > 0 {
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            println!("{p:>9}  {failed} of {p} workers could not start (see their errors above)");
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&check)
                .await?;
            check.close().await;
            continue;
        }
        // the server connections of this database, sampled while the run lasts
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let (check, peak, sampling) = (check.clone(), Arc::clone(&peak), Arc::clone(&sampling));
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(n) = sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() \
                           AND application_name IS DISTINCT FROM 'scale-driver'",
                    )
                    .fetch_one(&check)
                    .await
                    {
                        peak.fetch_max(n as u64, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let start = Instant::now();
        for child in &mut children {
            child.stdin.as_mut().context("stdin")?.write_all(b"go\n")?;
        }
        let unfinished =
            format!("SELECT count(*) FROM \"{schema}\".jobs WHERE state <> 'completed'");
        loop {
            let left: i64 = sqlx::query_scalar(&unfinished).fetch_one(&check).await?;
            if left == 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(timeout) {
                bail!("{left} jobs unfinished after {timeout} s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = start.elapsed();
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        let mut claims: Vec<u64> = Vec::new();
        let mut runs = 0u64;
        for (mut child, mut out) in children.into_iter().zip(outs) {
            drop(child.stdin.take());
            let mut line = String::new();
            out.read_line(&mut line)?;
            let status = child.wait()?;
            if !status.success() {
                bail!("a worker failed: {status}");
            }
            let v: serde_json::Value =
                serde_json::from_str(line.trim()).context("worker report")?;
            runs += v["runs"].as_u64().unwrap_or(0);
            claims.extend(
                v["claims_us"]
                    .as_array()
                    .context("claims")?
                    .iter()
                    .filter_map(|c| c.as_u64()),
            );
        }
        claims.sort_unstable();
        println!(
            "{p:>9} {:>9.0} {:>10.2}ms {:>10.2}ms {:>9} {:>11.1} {:>11}",
            jobs as f64 / took.as_secs_f64(),
            percentile(&claims, 0.5),
            percentile(&claims, 0.99),
            claims.len(),
            runs as f64 / claims.len().max(1) as f64,
            peak.load(Ordering::Relaxed)
        );
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&check)
            .await?;
        check.close().await;
    }
    Ok(())
}
