//! One-item jobs on MySQL/MariaDB: enqueue N jobs in one batch, then time one worker
//! working them off, the same harness as `pg_one_item_jobs` (concurrency 8, poll
//! 100 ms, a pool of 10). Beside it, in the same run and round by round, the floor:
//! a hand-written queue of the minimal SQL on the same server: 8 tasks, each claiming
//! up to 8 rows per transaction (`SELECT … ORDER BY id LIMIT 8 FOR UPDATE SKIP
//! LOCKED`, then one `UPDATE` marking them taken with a token) and completing each row
//! with one `UPDATE … WHERE id = ? AND token = ?` (a fenced release). No leases, no
//! checkpoints, no history: what any job queue on this database must at least do.
//!
//! Every round uses a database of its own (`iterjob_bench_…`), dropped at the end.
//! The server is `ITERJOB_BENCH_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`.
//!
//! ```text
//! cargo run --release -p iterjob-mysql --example mysql_one_item_jobs -- [JOBS] [ROUNDS]
//! ```
//! Defaults: 20,000 jobs, 3 rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_mysql::{MySqlOptions, MySqlPool, MySqlPoolOptions, MySqlStore};
use sqlx::{Connection, MySqlConnection, Row};

static DONE: AtomicU64 = AtomicU64::new(0);

/// Concurrency of both sides.
const CONCURRENCY: usize = 8;

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

fn server() -> String {
    std::env::var("ITERJOB_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// A fresh database; returns its URL.
async fn create_database(name: &str) -> anyhow::Result<String> {
    let mut conn = MySqlConnection::connect(&server()).await?;
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let server = server();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut conn = MySqlConnection::connect(&server()).await?;
    sqlx::query(&format!("DROP DATABASE `{name}`"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// iterjob: the work-off time of `jobs` jobs.
async fn iterjob_round(jobs: u32) -> anyhow::Result<Duration> {
    let name = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let url = create_database(&name).await?;
    let store = MySqlStore::connect_with(MySqlOptions::new(url).max_connections(10)).await?;
    let new: Vec<NewJob> = (0..jobs)
        .map(|i| NewJob::of(&OneItem, &i))
        .collect::<iterjob::Result<_>>()?;
    store.job_insert_many(&new).await?;
    let pool = store.pool().clone();
    let mut config = WorkerConfig::default();
    config.concurrency = CONCURRENCY;
    config.poll_interval = Duration::from_millis(100);
    let store: Arc<dyn Store> = Arc::new(store);
    let worker = Arc::new(Worker::new(store, Registry::new().with(OneItem), config)?);
    DONE.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let running = Arc::clone(&worker);
    let handle = tokio::spawn(async move { running.run().await });
    while DONE.load(Ordering::Relaxed) < u64::from(jobs) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM iterjob_jobs WHERE state <> 'completed'")
                .fetch_one(&pool)
                .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    worker.shutdown_token().cancel();
    handle.await??;
    pool.close().await;
    drop_database(&name).await?;
    Ok(took)
}

/// One task of the floor: claims up to 8 rows per transaction, completes each.
async fn floor_task(pool: MySqlPool) -> anyhow::Result<u64> {
    let mut done = 0u64;
    loop {
        let token: i64 = rand::random();
        let mut tx = pool.begin().await?;
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM q WHERE state = 0 ORDER BY id LIMIT 8 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(done);
        }
        let list = vec!["?"; ids.len()].join(", ");
        let sql = format!("UPDATE q SET state = 1, token = ? WHERE id IN ({list})");
        let mut take = sqlx::query(&sql).bind(token);
        for id in &ids {
            take = take.bind(id);
        }
        take.execute(&mut *tx).await?;
        tx.commit().await?;
        for id in ids {
            sqlx::query("UPDATE q SET state = 2, token = NULL WHERE id = ? AND token = ?")
                .bind(id)
                .bind(token)
                .execute(&pool)
                .await?;
            done += 1;
        }
    }
}

/// The floor: the work-off time of `jobs` rows by the minimal SQL queue.
async fn floor_round(jobs: u32) -> anyhow::Result<Duration> {
    let name = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let url = create_database(&name).await?;
    let pool = MySqlPoolOptions::new()
        .max_connections(10)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(
                    conn,
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                )
                .await
                .map(drop)
            })
        })
        .connect(&url)
        .await?;
    sqlx::query(
        "CREATE TABLE q (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         state TINYINT NOT NULL DEFAULT 0, token BIGINT NULL, KEY q_state (state, id)) \
         ENGINE = InnoDB",
    )
    .execute(&pool)
    .await?;
    let mut left = jobs;
    while left > 0 {
        let n = left.min(10_000);
        let rows = vec!["(0)"; n as usize].join(", ");
        sqlx::query(&format!("INSERT INTO q (state) VALUES {rows}"))
            .execute(&pool)
            .await?;
        left -= n;
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| tokio::spawn(floor_task(pool.clone())))
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let took = start.elapsed();
    anyhow::ensure!(
        done == u64::from(jobs),
        "the floor completed {done} of {jobs}"
    );
    pool.close().await;
    drop_database(&name).await?;
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let rate = |took: Duration| f64::from(jobs) / took.as_secs_f64();
    for i in 1..=rounds {
        let a = iterjob_round(jobs).await?;
        let b = floor_round(jobs).await?;
        println!(
            "round {i}: iterjob {:.0} jobs/s ({:.0} ms), minimal SQL queue {:.0} jobs/s ({:.0} ms)",
            rate(a),
            a.as_secs_f64() * 1000.0,
            rate(b),
            b.as_secs_f64() * 1000.0
        );
        ours.push(a);
        floor.push(b);
    }
    let (a, b) = (median(ours), median(floor));
    println!(
        "median: iterjob {:.0} jobs/s, minimal SQL queue {:.0} jobs/s: {:.2}x of the floor \
         ({jobs} jobs, concurrency {CONCURRENCY}, {} cores)",
        rate(a),
        rate(b),
        rate(a) / rate(b),
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    Ok(())
}
