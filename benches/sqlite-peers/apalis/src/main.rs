//! apalis-sqlite 1.0 (sqlx 0.9) doing one-item jobs, for the `sqlite-peers` driver:
//! enqueue N no-op tasks with one `push_all`, start a worker at concurrency C, time
//! until every handler ran and apalis's own table (`Jobs`) holds no task that is
//! not `Done`. Prints one JSON line. Its own binary: sqlx 0.9's `libsqlite3-sys`
//! 0.40 cannot link beside sqlx 0.8's 0.30.
//!
//! Settings: `SqlitePool::connect` (sqlx's defaults: 10 connections, SQLite's
//! default `synchronous=FULL` per connection), then `SqliteStorage::setup` as its
//! docs show (it sets `journal_mode=WAL`, and `synchronous=OFF`, `cache_size`,
//! `temp_store` on the one pooled connection it runs on); `Config::batch_size(B)`
//! (default 10: "Larger batches can improve throughput by reducing the number of
//! queue operations"); the default fetch (fetch again at once while tasks come,
//! park when a fetch is empty); `WorkerBuilder::concurrency(C)` with
//! `parallelize(tokio::spawn)`, as the PostgreSQL harness runs apalis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use apalis::prelude::*;
use apalis_sqlite::{Config, SqlitePool, SqliteStorage};
use clap::Parser;

static DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Tasks fetched per poll (`Config::batch_size`).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

async fn noop(_item: u32) -> Result<(), BoxDynError> {
    DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = std::env::temp_dir().join(format!("apalis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("queue.db").display());
    let pool = SqlitePool::connect(&url).await?;
    SqliteStorage::setup(&pool).await?;
    let queue = "bench";
    let config = Config::default().queue(queue).batch_size(cli.batch);
    let mut backend = SqliteStorage::<u32>::new(&pool).with_config(config);
    let tasks: Vec<Task<u32>> = (0..cli.jobs as u32)
        .map(|i| TaskBuilder::new(i).build())
        .collect();
    let t = Instant::now();
    backend
        .push_all(&mut futures::stream::iter(tasks))
        .await
        .map_err(|e| anyhow::anyhow!("push_all: {e:?}"))?;
    let enqueue = t.elapsed();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs")
        .fetch_one(&pool)
        .await?;
    if queued != cli.jobs as i64 {
        bail!("{queued} tasks in Jobs after pushing {}", cli.jobs);
    }

    let worker = WorkerBuilder::new("sqlite-peers-apalis")
        .backend(backend)
        .concurrency(cli.concurrency)
        .parallelize(tokio::spawn)
        .build(noop);
    let timeout = Duration::from_secs(cli.timeout_secs);
    let n = cli.jobs as u64;
    let start = Instant::now();
    let wait = async {
        while DONE.load(Ordering::Relaxed) < n {
            if start.elapsed() > timeout {
                bail!("timed out: {} of {n} handled", DONE.load(Ordering::Relaxed));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let handled = start.elapsed();
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs WHERE status <> 'Done'")
                .fetch_one(&pool)
                .await?;
            if left == 0 {
                break;
            }
            if start.elapsed() > timeout {
                bail!("timed out: {left} tasks not Done in the database");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok((handled, start.elapsed()))
    };
    // the worker's future is driven here beside the wait; dropping it stops it
    let (handled, workoff) = tokio::select! {
        r = worker.run() => bail!("apalis worker stopped early: {r:?}"),
        r = wait => r?,
    };
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "system": "apalis-sqlite",
            "enqueue_ms": enqueue.as_secs_f64() * 1000.0,
            "handled_ms": handled.as_secs_f64() * 1000.0,
            "workoff_ms": workoff.as_secs_f64() * 1000.0,
            "settings": format!(
                "batch_size {}, concurrency {}, pool 10, setup(): WAL, synchronous OFF on one connection, FULL (SQLite's default) on the others",
                cli.batch, cli.concurrency
            ),
        })
    );
    Ok(())
}
