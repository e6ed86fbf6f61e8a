//! Retention under load on PostgreSQL: does deleting a million finished jobs stall
//! the workers? A store is filled with N completed jobs that finished long ago; then
//! a worker (concurrency 8) runs a steady supply of one-item jobs while a probe
//! claims one job of its own queue every 5 ms and times the claim. Phase 1, the
//! worker keeps everything (`retention: None`); phase 2, a worker with the default
//! retention (batches of 500, 20 ms apart, under the retention lease) deletes the old
//! jobs while it works. Prints, per phase, the probe's claim latency percentiles
//! and the worker's jobs/s, and how long the deletion took.
//!
//! The schema (`iterjob_bench_…`) is dropped at the end. The server is
//! `ITERJOB_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
//!
//! ```text
//! cargo run --release -p iterjob-postgres --example pg_prune_under_load -- [OLD_JOBS] [BEFORE_SECS]
//! ```
//! Defaults: 1,000,000 old jobs, 10 s before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{ClaimRequest, Outcome};
use iterjob::{
    Job, JobContext, JobError, NewJob, Registry, Retention, Store, Worker, WorkerConfig,
};
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

/// Keeps about 2,000 one-item jobs waiting in the default queue, enqueued 500 at a
/// time (below the store's ANALYZE-after-a-large-enqueue threshold of 1,000, which on
/// a table of a million rows would cost more than the enqueue).
async fn feed(store: Arc<dyn Store>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    // counted from the jobs done so far, so each phase starts with the same backlog
    let mut inserted = DONE.load(Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        if inserted < DONE.load(Ordering::Relaxed) + 2_000 {
            let batch: Vec<NewJob> = (0..500)
                .map(|i| NewJob::of(&OneItem, &i))
                .collect::<iterjob::Result<_>>()?;
            store.job_insert_many(&batch).await?;
            inserted += 500;
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// Claims one job of the `probe` queue every 5 ms, timing the claim, and completes it.
async fn probe(store: Arc<dyn Store>, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let request = ClaimRequest {
        worker_id: "probe".into(),
        queues: vec!["probe".into()],
        kinds: vec![OneItem::KIND.into()],
        limit: 1,
        lease: Duration::from_secs(30),
    };
    while !stop.load(Ordering::Relaxed) {
        store
            .job_insert(&NewJob::of(&OneItem, &0)?.queue("probe"))
            .await?;
        let started = Instant::now();
        let claimed = store.job_claim(&request).await?;
        latencies.push(started.elapsed());
        for c in claimed {
            store
                .job_release(c.job.id, c.token, None, &Outcome::Completed)
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs a worker with `retention` and the probe until `until` says stop; returns
/// the probe's latencies, the jobs the worker did and the time.
async fn phase(
    store: &Arc<dyn Store>,
    retention: Option<Retention>,
    until: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(Vec<Duration>, u64, Duration)> {
    let mut config = WorkerConfig::default();
    config.concurrency = 8;
    config.poll_interval = Duration::from_millis(100);
    config.retention = retention;
    let worker = Arc::new(Worker::new(
        Arc::clone(store),
        Registry::new().with(OneItem),
        config,
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = tokio::spawn(feed(Arc::clone(store), Arc::clone(&stop)));
    let prober = tokio::spawn(probe(Arc::clone(store), Arc::clone(&stop)));
    let running = Arc::clone(&worker);
    let handle = tokio::spawn(async move { running.run().await });
    let done_before = DONE.load(Ordering::Relaxed);
    let start = Instant::now();
    until.await?;
    let took = start.elapsed();
    let done = DONE.load(Ordering::Relaxed) - done_before;
    stop.store(true, Ordering::Relaxed);
    worker.shutdown_token().cancel();
    handle.await??;
    feeder.await??;
    let latencies = prober.await??;
    Ok((latencies, done, took))
}

fn report(name: &str, latencies: &mut [Duration], done: u64, took: Duration) {
    latencies.sort();
    println!(
        "{name}: {:.1} s, worker {:.0} jobs/s; probe claim latency over {} claims: p50 {:.2} ms, \
         p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64(),
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        percentile(latencies, 1.0),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let old: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let schema = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let pg =
        PgStore::connect_with(PgOptions::new(url()).schema(&schema).max_connections(10)).await?;
    let pool = pg.pool().clone();
    let store: Arc<dyn Store> = Arc::new(pg);

    let setup = Instant::now();
    for chunk in 0..old.div_ceil(50_000) {
        let n = (old - chunk * 50_000).min(50_000);
        let new: Vec<NewJob> = (0..n)
            .map(|i| NewJob::of(&OneItem, &i))
            .collect::<iterjob::Result<_>>()?;
        store.job_insert_many(&new).await?;
    }
    sqlx::query(&format!(
        "UPDATE \"{schema}\".jobs SET state = 'completed', items_done = 1, items_total = 1, \
         runs = 1, started_at = 1000, finished_at = 1000, checkpointed_at = 1000"
    ))
    .execute(&pool)
    .await?;
    sqlx::query(&format!("VACUUM ANALYZE \"{schema}\".jobs"))
        .execute(&pool)
        .await?;
    println!(
        "{old} completed jobs that finished in 1970 written in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let (mut before, done, took) = phase(&store, None, async {
        tokio::time::sleep(Duration::from_secs(before_secs)).await;
        Ok(())
    })
    .await?;
    report("before (no retention)", &mut before, done, took);

    // the pruner walks ids upwards: the old jobs are gone once the last one is (a
    // primary-key lookup; a scan for "any old job left" would walk every deleted,
    // not yet vacuumed row each time and load the server as much as the pruner)
    let last_old: i64 = sqlx::query_scalar(&format!(
        "SELECT max(id) FROM \"{schema}\".jobs WHERE finished_at = 1000"
    ))
    .fetch_one(&pool)
    .await?;
    let old_left = format!("SELECT EXISTS (SELECT 1 FROM \"{schema}\".jobs WHERE id = {last_old})");
    let pool2 = pool.clone();
    let (mut during, done, took) = phase(&store, Some(Retention::default()), async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let left: bool = sqlx::query_scalar(&old_left).fetch_one(&pool2).await?;
            if !left {
                return Ok(());
            }
        }
    })
    .await?;
    report(
        "during (the worker deletes the old jobs)",
        &mut during,
        done,
        took,
    );
    println!(
        "deleted {old} jobs in {:.1} s: {:.0} jobs/s",
        took.as_secs_f64(),
        f64::from(old) / took.as_secs_f64()
    );

    pool.close().await;
    let mut conn = PgConnection::connect(&url()).await?;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
