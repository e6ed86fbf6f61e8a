//! One-item jobs on PostgreSQL: enqueue N jobs in one batch, then time one worker
//! working them off — iterjob's side of the peers benchmark (`benches/peers`), built
//! in the workspace so a change to the worker or the store can be measured and
//! profiled in seconds. Prints each round's work-off rate and the median.
//!
//! Every round uses a schema of its own (`iterjob_bench_…`), dropped at the end. The
//! server is `ITERJOB_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
//!
//! ```text
//! cargo run --release -p iterjob-postgres --example pg_one_item_jobs -- [JOBS] [ROUNDS] [PREFETCH]
//! ```
//! Defaults: 20,000 jobs, 3 rounds, the worker's default prefetch; concurrency 8,
//! poll 100 ms and a pool of 10, as in the peers benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_postgres::{PgOptions, PgStore};
use sqlx::{Connection, PgConnection};

static DONE: AtomicU64 = AtomicU64::new(0);

/// A job with one item whose work is counting it.
struct OneItem;

impl Job for OneItem {
    const KIND: &'static str = "one_item";
    type Params = u32;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _params: &u32,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..1, cursor))
    }

    async fn process(&self, _ctx: &JobContext<u32>, _item: i64) -> Result<(), JobError> {
        DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn url() -> String {
    std::env::var("ITERJOB_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// One round: the work-off time of `jobs` jobs.
async fn round(jobs: u32, prefetch: Option<usize>) -> anyhow::Result<Duration> {
    let schema = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let store =
        PgStore::connect_with(PgOptions::new(url()).schema(&schema).max_connections(10)).await?;
    let new: Vec<NewJob> = (0..jobs)
        .map(|i| NewJob::of(&OneItem, &i))
        .collect::<iterjob::Result<_>>()?;
    store.job_insert_many(&new).await?;
    let pool = store.pool().clone();
    let mut config = WorkerConfig::default();
    config.concurrency = 8;
    config.poll_interval = Duration::from_millis(100);
    if let Some(prefetch) = prefetch {
        config.prefetch = prefetch;
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let worker = Arc::new(Worker::new(store, Registry::new().with(OneItem), config)?);
    DONE.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let running = Arc::clone(&worker);
    let handle = tokio::spawn(async move { running.run().await });
    while DONE.load(Ordering::Relaxed) < u64::from(jobs) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let unfinished = format!("SELECT count(*) FROM \"{schema}\".jobs WHERE state <> 'completed'");
    loop {
        let left: i64 = sqlx::query_scalar(&unfinished).fetch_one(&pool).await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    worker.shutdown_token().cancel();
    handle.await??;
    pool.close().await;
    let mut conn = PgConnection::connect(&url()).await?;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let prefetch: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let mut times = Vec::new();
    for i in 1..=rounds {
        let took = round(jobs, prefetch).await?;
        println!(
            "round {i}: {jobs} jobs worked off in {:.0} ms: {:.0} jobs/s",
            took.as_secs_f64() * 1000.0,
            f64::from(jobs) / took.as_secs_f64()
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "median: {:.0} jobs/s (prefetch {})",
        f64::from(jobs) / median.as_secs_f64(),
        prefetch.map_or_else(|| "default".to_string(), |p| p.to_string())
    );
    Ok(())
}
