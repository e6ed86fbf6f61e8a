//! A soak on PostgreSQL: a steady offered load of job lifecycles (enqueue, claim, run,
//! finish, deleted by retention) for as long as a million of them take, sampling what
//! the jobs table turns into: its heap and index sizes, live and dead tuples, the
//! share of updates that were HOT, autovacuum runs and WAL written per job.
//!
//! Meant for a cluster set up like production (autovacuum on); `benches/soak/run`
//! creates one on its own port, runs this against it and drops it. The schema
//! (`iterjob_soak`) is dropped at the start and left at the end for inspection.
//!
//! The load: a feeder enqueues `RATE` jobs a second in batches of 250 (below the
//! store's ANALYZE-after-a-large-enqueue threshold, as an application enqueueing as
//! its events arrive would); 1 job in 1,000 walks 100 items of 10 ms each and
//! checkpoints every 10 items, the others have one item. One worker with the default
//! settings except concurrency 16 runs them; retention deletes completed jobs 30 s
//! after they finish, looking every 5 s (a production setting such as 7 days, scaled to
//! the soak: the table's steady state is the finish rate times the retention).
//!
//! ```text
//! ITERJOB_BENCH_PG_URL=postgres://postgres@127.0.0.1:5434/postgres \
//!     cargo run --release -p iterjob-postgres --example pg_soak -- [LIFECYCLES] [RATE]
//! ```
//! Defaults: 1,000,000 lifecycles, 5,000 jobs/s offered. `SOAK_CSV=path` also writes
//! every sample as CSV. The worker's log goes to stderr: warnings, and retention and
//! backpressure at `info` (`RUST_LOG` overrides).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::{
    Job, JobContext, JobError, KindSettings, NewJob, Registry, Retention, Store, Worker,
    WorkerConfig,
};
use iterjob_postgres::{PgOptions, PgStore};
use sqlx::{PgPool, Row};

const SCHEMA: &str = "iterjob_soak";
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const RETAIN: Duration = Duration::from_secs(30);
const BATCH: u64 = 250;
const WALK_EVERY: u64 = 1_000;

static FINISHED: AtomicU64 = AtomicU64::new(0);

/// A job with one item whose work is counting it.
struct OneItem;

impl Job for OneItem {
    const KIND: &'static str = "one_item";
    type Params = u64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _params: &u64,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..1, cursor))
    }

    async fn process(&self, _ctx: &JobContext<u64>, _item: i64) -> Result<(), JobError> {
        FINISHED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A job of 100 items of 10 ms each, checkpointing every 10 items: its checkpoints
/// and heartbeats are the updates that can stay HOT.
struct Walk;

impl Job for Walk {
    const KIND: &'static str = "walk";
    type Params = u64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _params: &u64,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..100, cursor))
    }

    async fn process(&self, _ctx: &JobContext<u64>, item: i64) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if item == 99 {
            FINISHED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default().checkpoint_every(10)
    }
}

fn url() -> String {
    std::env::var("ITERJOB_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".to_string())
}

/// Offers `rate` jobs a second until `total` are enqueued, `BATCH` per statement.
async fn feed(store: Arc<dyn Store>, total: u64, rate: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut next = 0u64;
    while next < total {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if next + BATCH > due.min(total) && due < total {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let end = (next + BATCH).min(total);
        let batch: Vec<NewJob> = (next..end)
            .map(|i| {
                if i % WALK_EVERY == WALK_EVERY - 1 {
                    NewJob::of(&Walk, &i)
                } else {
                    NewJob::of(&OneItem, &i)
                }
            })
            .collect::<iterjob::Result<_>>()?;
        store.job_insert_many(&batch).await?;
        next = end;
    }
    Ok(())
}

/// One reading of the jobs table and the server.
#[derive(Clone, Debug, Default)]
struct Sample {
    secs: f64,
    finished: u64,
    waiting: i64,
    rows: i64,
    live: i64,
    dead: i64,
    heap: i64,
    indexes: i64,
    toast: i64,
    updates: i64,
    hot: i64,
    deletes: i64,
    autovacuums: i64,
    autoanalyzes: i64,
    wal: i64,
    index_sizes: Vec<(String, i64)>,
}

async fn sample(pool: &PgPool, start: Instant) -> anyhow::Result<Sample> {
    // the statistics a backend collects are flushed at most once a second and when it
    // goes idle; ask for this backend's view to be fresh
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(pool)
        .await?;
    let row = sqlx::query(&format!(
        "SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, n_tup_del, \
                autovacuum_count, autoanalyze_count, \
                pg_relation_size(relid), pg_indexes_size(relid), \
                pg_total_relation_size(relid) - pg_relation_size(relid) - pg_indexes_size(relid), \
                (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, \
                (SELECT count(*) FROM \"{SCHEMA}\".jobs), \
                (SELECT count(*) FROM \"{SCHEMA}\".jobs WHERE state IN ('queued', 'retrying', 'running')) \
         FROM pg_stat_user_tables WHERE schemaname = '{SCHEMA}' AND relname = 'jobs'"
    ))
    .fetch_one(pool)
    .await?;
    let index_sizes = sqlx::query(&format!(
        "SELECT indexrelname::text, pg_relation_size(indexrelid) FROM pg_stat_user_indexes \
         WHERE schemaname = '{SCHEMA}' AND relname = 'jobs' ORDER BY indexrelname"
    ))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect();
    Ok(Sample {
        secs: start.elapsed().as_secs_f64(),
        finished: FINISHED.load(Ordering::Relaxed),
        live: row.get(0),
        dead: row.get(1),
        updates: row.get(2),
        hot: row.get(3),
        deletes: row.get(4),
        autovacuums: row.get(5),
        autoanalyzes: row.get(6),
        heap: row.get(7),
        indexes: row.get(8),
        toast: row.get(9),
        wal: row.get(10),
        rows: row.get(11),
        waiting: row.get(12),
        index_sizes,
    })
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn hot_share(from: &Sample, to: &Sample) -> f64 {
    let updates = to.updates - from.updates;
    if updates == 0 {
        return 0.0;
    }
    (to.hot - from.hot) as f64 / updates as f64 * 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let csv_path = std::env::var("SOAK_CSV").ok();
    // the worker's own account of what it did (backpressure, retention) beside the
    // samples; RUST_LOG overrides
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,iterjob::runtime::retention=info,iterjob::runtime::backpressure=info".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();

    let admin = PgPool::connect(&url()).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"))
        .execute(&admin)
        .await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', \
         'autovacuum_naptime', 'autovacuum_vacuum_scale_factor', 'shared_buffers', \
         'synchronous_commit', 'fsync', 'max_wal_size', 'server_version') ORDER BY name",
    )
    .fetch_all(&admin)
    .await?;
    println!(
        "server: {}",
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if settings
        .iter()
        .any(|(k, v)| k == "autovacuum" && v == "off")
    {
        eprintln!(
            "warning: autovacuum is off on this server; a soak means to measure it on \
             (benches/soak/run creates a cluster with it on)"
        );
    }

    let pg = PgStore::connect_with(PgOptions::new(url()).schema(SCHEMA)).await?;
    let store: Arc<dyn Store> = Arc::new(pg);
    let mut config = WorkerConfig::default();
    config.concurrency = 16;
    let mut retention = Retention::default();
    retention.completed = Some(RETAIN);
    retention.interval = Duration::from_secs(5);
    config.retention = Some(retention);
    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        Registry::new().with(OneItem).with(Walk),
        config,
    )?);
    println!(
        "soak: {total} lifecycles offered at {rate} jobs/s (1 in {WALK_EVERY} a 100-item \
         walk), concurrency 16, completed jobs deleted {} s after finishing",
        RETAIN.as_secs()
    );

    let start = Instant::now();
    let first = sample(&admin, start).await?;
    let feeder = tokio::spawn(feed(Arc::clone(&store), total, rate));
    let running = Arc::clone(&worker);
    let handle = tokio::spawn(async move { running.run().await });

    let mut csv = match &csv_path {
        Some(path) => {
            let mut f = std::fs::File::create(path)?;
            writeln!(
                f,
                "secs,finished,waiting,rows,live,dead,heap_bytes,index_bytes,toast_bytes,\
                 updates,hot_updates,deletes,autovacuums,autoanalyzes,wal_bytes"
            )?;
            Some(f)
        }
        None => None,
    };
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>5} {:>8} {:>6}",
        "secs",
        "finished",
        "jobs/s",
        "waiting",
        "rows",
        "dead",
        "heap MiB",
        "index MiB",
        "HOT %",
        "vac",
        "WAL B/j",
        "ETA s"
    );
    let mut samples = vec![first.clone()];
    let mut last = first.clone();
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let s = sample(&admin, start).await?;
        let window = s.secs - last.secs;
        let jobs_s = (s.finished - last.finished) as f64 / window;
        let eta = if jobs_s > 0.0 {
            (total.saturating_sub(s.finished)) as f64 / jobs_s
        } else {
            f64::INFINITY
        };
        let wal_per_job = if s.finished > last.finished {
            (s.wal - last.wal) as f64 / (s.finished - last.finished) as f64
        } else {
            0.0
        };
        println!(
            "{:>6.0} {:>9} {:>8.0} {:>8} {:>8} {:>8} {:>8.1} {:>9.1} {:>6.1} {:>5} {:>8.0} {:>6.0}",
            s.secs,
            s.finished,
            jobs_s,
            s.waiting,
            s.rows,
            s.dead,
            mib(s.heap),
            mib(s.indexes),
            hot_share(&last, &s),
            s.autovacuums,
            wal_per_job,
            eta
        );
        if let Some(f) = csv.as_mut() {
            writeln!(
                f,
                "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                s.secs,
                s.finished,
                s.waiting,
                s.rows,
                s.live,
                s.dead,
                s.heap,
                s.indexes,
                s.toast,
                s.updates - first.updates,
                s.hot - first.hot,
                s.deletes - first.deletes,
                s.autovacuums,
                s.autoanalyzes,
                s.wal - first.wal
            )?;
        }
        samples.push(s.clone());
        last = s;
        if last.finished >= total || handle.is_finished() {
            break;
        }
    }
    let took = start.elapsed();
    worker.shutdown_token().cancel();
    handle.await??;
    feeder.await??;

    let end = samples.last().cloned().unwrap_or_default();
    println!();
    println!(
        "{} lifecycles in {:.0} s: {:.0} jobs/s finished (offered {rate}); WAL {:.0} bytes a job; \
         {:.1} % of {} updates HOT; {} deletes; {} autovacuums and {} autoanalyzes of the jobs table",
        end.finished,
        took.as_secs_f64(),
        end.finished as f64 / took.as_secs_f64(),
        (end.wal - first.wal) as f64 / end.finished.max(1) as f64,
        hot_share(&first, &end),
        end.updates - first.updates,
        end.deletes - first.deletes,
        end.autovacuums - first.autovacuums,
        end.autoanalyzes - first.autoanalyzes,
    );
    println!();
    println!("at each tenth of the lifecycles (the first sample past it):");
    println!(
        "| done | secs | rows | dead | heap MiB | indexes MiB | toast MiB | HOT % since last | autovacuums |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut prev = first.clone();
    for tenth in 1..=10u64 {
        let Some(s) = samples.iter().find(|s| s.finished * 10 >= total * tenth) else {
            break;
        };
        if s.secs == prev.secs {
            continue;
        }
        println!(
            "| {} % | {:.0} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {} |",
            tenth * 10,
            s.secs,
            s.rows,
            s.dead,
            mib(s.heap),
            mib(s.indexes),
            mib(s.toast),
            hot_share(&prev, s),
            s.autovacuums
        );
        prev = s.clone();
    }
    println!();
    println!("indexes at the end:");
    for (name, bytes) in &end.index_sizes {
        let at_half = samples
            .iter()
            .find(|s| s.finished * 2 >= total)
            .and_then(|s| s.index_sizes.iter().find(|(n, _)| n == name))
            .map(|(_, b)| *b)
            .unwrap_or(0);
        println!(
            "  {name}: {:.2} MiB (at half the lifecycles: {:.2} MiB)",
            mib(*bytes),
            mib(at_half)
        );
    }
    Ok(())
}
