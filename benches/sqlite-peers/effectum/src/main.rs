//! effectum (SQLite job queue, rusqlite 0.31) doing one-item jobs, for the
//! `sqlite-peers` driver: enqueue N no-op jobs with one `Queue::add_jobs`, start a
//! worker at concurrency C, time until every handler ran and the queue's own table
//! (`active_jobs`, through `Queue::num_active_jobs`, an uncached `COUNT(*)`) is
//! empty. Prints one JSON line. Its own binary: effectum's `libsqlite3-sys` 0.28
//! cannot link beside sqlx 0.8's 0.30.
//!
//! Settings as effectum ships them: `Queue::new` (its writer connection asks for
//! `synchronous = normal`, and for `journal = wal`, which is no SQLite pragma, so
//! the database keeps SQLite's rollback journal: the JSON reports the file's
//! `journal_mode` as read after the run); `Worker::builder(..).max_concurrency(C)`
//! (min concurrency defaults to the max). effectum has no claim-size knob: a
//! worker grabs up to its free slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

#[derive(Debug, Clone)]
struct Ctx {
    done: Arc<AtomicU64>,
}

async fn noop(_job: RunningJob, ctx: Ctx) -> Result<(), String> {
    ctx.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = std::env::temp_dir().join(format!("effectum-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("queue.db");
    let queue = Queue::new(&path).await?;
    let jobs: Vec<Job> = (0..cli.jobs as u32)
        .map(|i| Job::builder("one_item").json_payload(&i).map(|b| b.build()))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    queue.add_jobs(jobs).await?;
    let enqueue = t.elapsed();

    let done = Arc::new(AtomicU64::new(0));
    let ctx = Ctx {
        done: Arc::clone(&done),
    };
    let runner = JobRunner::builder("one_item", noop).build();
    let start = Instant::now();
    let worker: Worker = Worker::builder(&queue, ctx)
        .max_concurrency(cli.concurrency)
        .jobs([runner])
        .build()
        .await?;
    let timeout = Duration::from_secs(cli.timeout_secs);
    let n = cli.jobs as u64;
    while done.load(Ordering::Relaxed) < n {
        if start.elapsed() > timeout {
            bail!("timed out: {} of {n} handled", done.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled = start.elapsed();
    loop {
        let active = queue.num_active_jobs().await?;
        if active.pending + active.running == 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!(
                "timed out: {} pending and {} running jobs not finished in the database",
                active.pending,
                active.running
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let workoff = start.elapsed();
    worker.unregister(Some(Duration::from_secs(5))).await?;
    queue.close(Duration::from_secs(5)).await?;
    let journal: String = {
        let conn = rusqlite::Connection::open(&path)?;
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "system": "effectum",
            "enqueue_ms": enqueue.as_secs_f64() * 1000.0,
            "handled_ms": handled.as_secs_f64() * 1000.0,
            "workoff_ms": workoff.as_secs_f64() * 1000.0,
            "settings": format!(
                "max_concurrency {} (min = max), Queue::new defaults: synchronous=normal on its writer, journal_mode={journal}",
                cli.concurrency
            ),
        })
    );
    Ok(())
}
