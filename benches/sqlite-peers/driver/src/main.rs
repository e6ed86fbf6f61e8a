//! `sqlite-peers`: iterjob's SQLite store against the Rust SQLite job queues,
//! one-item jobs, each system in its own process and its own database file.
//!
//! * `sqlite-peers throughput` — interleaved rounds of every system named in
//!   `--systems`, medians, per-round ratios to the best peer and to the floor.
//! * `sqlite-peers one SYSTEM` — one round of `iterjob[:normal]` or `floor:B`,
//!   printing one JSON line (the driver runs itself this way, so every system pays
//!   the same process start, untimed).
//!
//! The peers are their own binaries because they cannot link together: apalis-sqlite
//! 1.0 is built on sqlx 0.9 (`libsqlite3-sys` 0.40), effectum 0.7 on rusqlite 0.31
//! (`libsqlite3-sys` 0.28), iterjob on sqlx 0.8 (0.30). Build them first:
//!
//! ```text
//! (cd benches/sqlite-peers/apalis && cargo build --release)
//! (cd benches/sqlite-peers/effectum && cargo build --release)
//! cd benches/sqlite-peers/driver && cargo run --release -- throughput
//! ```
//!
//! Each round: a fresh temporary file; N jobs enqueued in one batch (timed apart);
//! a worker with a no-op handler at concurrency C; the clock stops when every
//! handler ran and the system's own table counts no unfinished job. See
//! BENCHMARKS.md ("SQLite: one-item jobs against other Rust SQLite queues").

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Parser)]
#[command(name = "sqlite-peers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Interleaved rounds of every system; medians and ratios.
    ///
    /// Systems: `iterjob` (the store and worker as they come: WAL,
    /// synchronous=FULL), `iterjob:normal` (synchronous=NORMAL), `apalis:B` (apalis-
    /// sqlite fetching B tasks a poll; `apalis:default` = 10), `effectum`, and
    /// `floor:B` (a minimal sqlx client: claim B rows in one transaction, finish
    /// them in another, WAL and synchronous=FULL as iterjob's default).
    Throughput {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "iterjob,iterjob:normal,apalis:100,apalis:default,apalis:12,effectum,floor:12,floor:100"
        )]
        systems: Vec<String>,
    },
    /// One round of one in-process system (`iterjob`, `iterjob:normal`, `floor:B`).
    One {
        system: String,
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Throughput {
            jobs,
            rounds,
            concurrency,
            systems,
        } => throughput(jobs, rounds, concurrency, &systems),
        Cmd::One {
            system,
            jobs,
            concurrency,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            let out = rt.block_on(one(&system, jobs, concurrency))?;
            println!("{out}");
            Ok(())
        }
    }
}

/// A sibling bench binary, built in its own workspace.
fn peer_binary(dir: &str, name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("target/release")
        .join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --release` in benches/sqlite-peers/{dir}",
            path.display()
        );
    }
    Ok(path)
}

/// Runs one round of `system` in a child process; its JSON line.
fn round(system: &str, jobs: usize, concurrency: usize) -> Result<Value> {
    let (name, profile) = system.split_once(':').unwrap_or((system, ""));
    let mut cmd = match name {
        "iterjob" | "floor" => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("one").arg(system);
            c
        }
        "apalis" => {
            let batch = match profile {
                "" | "default" => 10,
                b => b
                    .parse()
                    .with_context(|| format!("apalis batch in {system}"))?,
            };
            let mut c = Command::new(peer_binary("apalis", "apalis-sqlite-bench")?);
            c.arg("--batch").arg(batch.to_string());
            c
        }
        "effectum" => Command::new(peer_binary("effectum", "effectum-bench")?),
        _ => bail!("unknown system {system}"),
    };
    cmd.arg("--jobs")
        .arg(jobs.to_string())
        .arg("--concurrency")
        .arg(concurrency.to_string());
    let out = cmd.output().with_context(|| format!("running {system}"))?;
    if !out.status.success() {
        bail!(
            "{system} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{system} printed no result: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn throughput(jobs: usize, rounds: usize, concurrency: usize, systems: &[String]) -> Result<()> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "one-item jobs on SQLite: {jobs} jobs, {rounds} rounds, concurrency {concurrency}; cores {}; loadavg {}",
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut enqueue: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut settings: Vec<String> = vec![String::new(); systems.len()];
    for r in 0..rounds {
        for (i, system) in systems.iter().enumerate() {
            let v = round(system, jobs, concurrency)?;
            let workoff = v["workoff_ms"].as_f64().context("workoff_ms")?;
            let rate = jobs as f64 / (workoff / 1000.0);
            println!(
                "round {} {system:<16} {rate:>9.0} jobs/s (enqueue {:.0} ms){}",
                r + 1,
                v["enqueue_ms"].as_f64().unwrap_or(f64::NAN),
                v["mean_claim"]
                    .as_f64()
                    .map(|c| format!("; mean claim {c:.1} jobs"))
                    .unwrap_or_default()
            );
            rates[i].push(rate);
            enqueue[i].push(v["enqueue_ms"].as_f64().unwrap_or(f64::NAN));
            settings[i] = v["settings"].as_str().unwrap_or_default().to_string();
        }
    }
    let is_iterjob = |s: &str| s.starts_with("iterjob");
    let is_floor = |s: &str| s.starts_with("floor");
    println!(
        "\n{:<16} {:>10} {:>12}  settings",
        "system", "jobs/s", "enqueue ms"
    );
    for (i, system) in systems.iter().enumerate() {
        println!(
            "{system:<16} {:>10.0} {:>12.0}  {}",
            median(rates[i].clone()),
            median(enqueue[i].clone()),
            settings[i]
        );
    }
    // per round: iterjob (each profile) against the best peer of that round and
    // against each floor
    let has_peer = systems.iter().any(|s| !is_iterjob(s) && !is_floor(s));
    for (i, system) in systems.iter().enumerate().filter(|(_, s)| is_iterjob(s)) {
        let mut vs_peer = Vec::new();
        for r in 0..rounds {
            let best = systems
                .iter()
                .enumerate()
                .filter(|(_, s)| !is_iterjob(s) && !is_floor(s))
                .map(|(j, _)| rates[j][r])
                .fold(f64::NAN, f64::max);
            vs_peer.push(rates[i][r] / best);
        }
        if has_peer {
            let shown: Vec<String> = vs_peer.iter().map(|x| format!("{x:.2}x")).collect();
            println!(
                "{system}: vs the best peer per round {} (median {:.2}x)",
                shown.join(" "),
                median(vs_peer.clone())
            );
        }
        for (j, floor) in systems.iter().enumerate().filter(|(_, s)| is_floor(s)) {
            let per: Vec<f64> = (0..rounds).map(|r| rates[i][r] / rates[j][r]).collect();
            let shown: Vec<String> = per.iter().map(|x| format!("{x:.2}x")).collect();
            println!(
                "{system}: vs {floor} per round {} (median {:.2}x)",
                shown.join(" "),
                median(per)
            );
        }
    }
    Ok(())
}

/// One round of an in-process system; its JSON line.
async fn one(system: &str, jobs: usize, concurrency: usize) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jobs.db");
    match system.split_once(':').unwrap_or((system, "")) {
        ("iterjob", profile) => run_iterjob(&path, profile == "normal", jobs, concurrency).await,
        ("floor", b) => run_floor(&path, b.parse().context("floor:B")?, jobs).await,
        _ => bail!("`one` runs iterjob, iterjob:normal or floor:B, not {system}"),
    }
}

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

/// The store and worker as they come (`SqliteStore::connect`,
/// `WorkerConfig::default()`), at the run's concurrency; `normal`: the store's
/// `synchronous` lowered to NORMAL, the one documented durability knob.
async fn run_iterjob(
    path: &std::path::Path,
    normal: bool,
    jobs: usize,
    concurrency: usize,
) -> Result<Value> {
    use iterjob::{NewJob, Registry, Store, Worker, WorkerConfig};
    use iterjob_sqlite::SqliteStore;
    use sqlx::sqlite::SqliteSynchronous;
    let mut options = SqliteStore::options(path.to_str().context("utf-8 path")?)?;
    if normal {
        options = options.synchronous(SqliteSynchronous::Normal);
    }
    let store = SqliteStore::connect_with(options).await?;
    let new: Vec<NewJob> = (0..jobs as u32)
        .map(|i| NewJob::of(&ij::OneItem, &i))
        .collect::<iterjob::Result<_>>()?;
    let t = Instant::now();
    store.job_insert_many(&new).await?;
    let enqueue = t.elapsed();
    let check = store.pool().clone();

    let mut config = WorkerConfig::default();
    config.concurrency = concurrency;
    let settings = format!(
        "WorkerConfig::default() (prefetch {}, poll {:?}) at concurrency {concurrency}, pool 10, WAL, synchronous={}",
        config.prefetch,
        config.poll_interval,
        if normal { "NORMAL" } else { "FULL" }
    );
    let store: Arc<dyn Store> = Arc::new(store);
    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        Registry::new().with(ij::OneItem),
        config,
    )?);
    let start = Instant::now();
    let w = Arc::clone(&worker);
    let handle = tokio::spawn(async move { w.run().await });
    let res = wait_done(start, jobs, || {
        let check = check.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM iterjob_jobs WHERE state <> 'completed'",
            )
            .fetch_one(&check)
            .await
            .map_err(anyhow::Error::from)
        }
    })
    .await;
    worker.shutdown_token().cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    let (handled, workoff) = res?;
    // the worker's mean claim: the rows of one claim share their `started_at` (the
    // claim statement's clock), and a job claimed again keeps its first
    let mean_claim: Option<f64> = sqlx::query_scalar(
        "SELECT CAST(count(*) AS REAL) / nullif(count(DISTINCT started_at), 0) \
         FROM iterjob_jobs WHERE started_at IS NOT NULL",
    )
    .fetch_one(&check)
    .await?;
    Ok(json!({
        "system": if normal { "iterjob:normal" } else { "iterjob" },
        "enqueue_ms": ms(enqueue),
        "handled_ms": ms(handled),
        "workoff_ms": ms(workoff),
        "mean_claim": mean_claim,
        "settings": settings,
    }))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until every handler ran, then until `remaining` (the system's own count
/// of unfinished jobs) is zero: (handled, done) from `start`.
async fn wait_done<F, Fut>(
    start: Instant,
    jobs: usize,
    remaining: F,
) -> Result<(Duration, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<i64>>,
{
    let timeout = Duration::from_secs(300);
    let n = jobs as u64;
    while DONE.load(Ordering::Relaxed) < n {
        if start.elapsed() > timeout {
            bail!("timed out: {} of {n} handled", DONE.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled = start.elapsed();
    loop {
        let left = remaining().await?;
        if left <= 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!("timed out: {left} jobs not finished in the database");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((handled, start.elapsed()))
}

/// What SQLite itself does with a queue's minimal SQL here: one connection (SQLite
/// has one writer), WAL and synchronous=FULL as iterjob's default; each loop claims
/// B queued rows in one `BEGIN IMMEDIATE` transaction and marks them done in a
/// second, as a durable queue must (a claim is on disk before the work starts).
async fn run_floor(path: &std::path::Path, batch: usize, jobs: usize) -> Result<Value> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{Connection, SqliteConnection};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    sqlx::query(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, payload TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued'")
        .execute(&mut conn)
        .await?;
    let t = Instant::now();
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) \
         INSERT INTO jobs (id, state, payload) SELECT i, 'queued', i FROM seq",
    )
    .bind(jobs as i64)
    .execute(&mut conn)
    .await?;
    let enqueue = t.elapsed();
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'running' WHERE id IN \
             (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT ?) RETURNING id",
        )
        .bind(batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        if ids.is_empty() {
            break;
        }
        done += ids.len();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        sqlx::query(&format!(
            "UPDATE jobs SET state = 'done' WHERE id IN ({list})"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let workoff = start.elapsed();
    if done != jobs {
        bail!("the floor finished {done} of {jobs} rows");
    }
    Ok(json!({
        "system": format!("floor:{batch}"),
        "enqueue_ms": ms(enqueue),
        "handled_ms": ms(workoff),
        "workoff_ms": ms(workoff),
        "settings": format!("one connection, WAL, synchronous=FULL, claim {batch} then finish them, two transactions"),
    }))
}
