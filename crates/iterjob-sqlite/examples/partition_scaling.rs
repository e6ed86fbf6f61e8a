//! Parallel iteration, measured: one job over a table of ROWS rows walked as 1, 2 and
//! 4 partitions by as many worker slots, where the work (a simulated downstream call
//! per page of rows) dominates; then the tail: four partitions, one of them 10x
//! slower, with and without dynamic splitting. All in one run, one after another, on
//! the same table (made once and kept in DB).
//!
//! ```text
//! cargo run --release -p iterjob-sqlite --example partition_scaling -- [ROWS] [DB]
//! ```
//!
//! Defaults: 10,000,000 rows in `target/partition-scaling.db`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iterjob::enumerator::Enumerator;
use iterjob::partition::KeyRange;
use iterjob::store::{JobState, NewJob, Store};
use iterjob::{Job, JobContext, JobError, Registry, Worker, WorkerConfig};
use iterjob_sqlite::{KeyValue, Keyset, KeysetCursor, SqliteStore};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

/// Rows per page: one simulated downstream call each.
const PAGE: usize = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Params {
    /// Latency of the downstream call per page, in milliseconds.
    call_ms: u64,
    /// Pages whose first id is below this take `slow_factor` times as long.
    slow_below: i64,
    slow_factor: u64,
    #[serde(default)]
    range: KeyRange<KeysetCursor>,
}

struct WalkRows {
    pool: SqlitePool,
}

fn rows(params: &Params) -> Keyset {
    Keyset::table("bench_rows")
        .key("id")
        .batch_size(PAGE)
        .range(&params.range)
}

fn bound(cursor: &Option<KeysetCursor>) -> Option<i64> {
    match cursor.as_ref().map(|c| c.values()) {
        Some([KeyValue::Integer(id)]) => Some(*id),
        _ => None,
    }
}

impl Job for WalkRows {
    const KIND: &'static str = "walk_rows";
    const PARTITIONABLE: bool = true;
    type Params = Params;
    type Cursor = KeysetCursor;
    type Item = Vec<SqliteRow>;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Vec<SqliteRow>, KeysetCursor>, JobError> {
        Ok(rows(params).batches(&self.pool, cursor))
    }

    fn count_items(&self, page: &Vec<SqliteRow>) -> u64 {
        page.len() as u64
    }

    async fn process(
        &self,
        ctx: &JobContext<Params>,
        page: Vec<SqliteRow>,
    ) -> Result<(), JobError> {
        let first: i64 = page.first().map_or(0, |r| r.get(0));
        let sum: i64 = page.iter().map(|r| r.get::<i64, _>(1)).sum();
        std::hint::black_box(sum);
        let p = &ctx.params;
        let factor = if first < p.slow_below {
            p.slow_factor
        } else {
            1
        };
        tokio::time::sleep(Duration::from_millis(p.call_ms * factor)).await;
        Ok(())
    }

    async fn total(&self, params: &Params) -> Result<Option<u64>, JobError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bench_rows WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR id <= ?2)",
        )
        .bind(bound(&params.range.after))
        .bind(bound(&params.range.until))
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(n as u64))
    }

    async fn partition(&self, params: &Params, n: u32) -> Result<Vec<Params>, JobError> {
        let ranges = rows(params).quantile_ranges(&self.pool, n).await?;
        Ok(ranges
            .into_iter()
            .map(|range| Params {
                range,
                ..params.clone()
            })
            .collect())
    }

    async fn split(
        &self,
        params: &Params,
        cursor: Option<&KeysetCursor>,
    ) -> Result<Option<(Params, Params)>, JobError> {
        let Some(mid) = rows(params).midpoint(&self.pool, cursor).await? else {
            return Ok(None);
        };
        let (keep, give) = params.range.split_at(mid);
        Ok(Some((
            Params {
                range: keep,
                ..params.clone()
            },
            Params {
                range: give,
                ..params.clone()
            },
        )))
    }
}

async fn ensure_rows(store: &SqliteStore, n: i64) {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
    )
    .execute(store.pool())
    .await
    .expect("create");
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bench_rows")
        .fetch_one(store.pool())
        .await
        .expect("count");
    if have == n {
        return;
    }
    eprintln!("creating {n} rows…");
    sqlx::query("DELETE FROM bench_rows")
        .execute(store.pool())
        .await
        .expect("clear");
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) \
         INSERT INTO bench_rows (id, v) SELECT i, i * 7 FROM seq",
    )
    .bind(n)
    .execute(store.pool())
    .await
    .expect("fill");
}

struct Outcome {
    wall: Duration,
    partitions: usize,
}

async fn walk(store: &SqliteStore, params: &Params, slots: u32, splitting: bool) -> Outcome {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let job = WalkRows {
        pool: store.pool().clone(),
    };
    let new = NewJob::of(&job, params).expect("params").partitions(slots);
    let id = shared.job_insert(&new).await.expect("enqueue");
    let mut config = WorkerConfig::default();
    config.concurrency = slots as usize;
    config.poll_interval = Duration::from_millis(50);
    config.dynamic_splitting = splitting;
    config.split_min_remaining = (PAGE * 4) as u64;
    let worker =
        Worker::new(Arc::clone(&shared), Registry::new().with(job), config).expect("config");
    let start = Instant::now();
    worker.run_until_idle().await.expect("worker");
    let wall = start.elapsed();
    let record = shared.job_get(id).await.expect("get").expect("job");
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    let partitions = shared.job_partitions(id).await.expect("partitions").len();
    Outcome { wall, partitions }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("ROWS is a number"));
    let db = args
        .next()
        .unwrap_or_else(|| "target/partition-scaling.db".to_string());
    let store = SqliteStore::connect(&db).await.expect("open");
    ensure_rows(&store, n).await;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} rows, pages of {PAGE}, {cores} cores");

    // Scaling: the downstream call (40 ms a page) dominates the walk.
    let work = Params {
        call_ms: 40,
        slow_below: 0,
        slow_factor: 1,
        range: KeyRange::all(),
    };
    let mut base = None;
    println!("\nscaling (40 ms downstream call per page of {PAGE} rows, no dynamic splitting):");
    for slots in [1u32, 2, 4] {
        let o = walk(&store, &work, slots, false).await;
        let secs = o.wall.as_secs_f64();
        let base = *base.get_or_insert(secs);
        println!(
            "  {slots} worker slot(s): {secs:6.2} s, {:>10.0} rows/s, {:.2}x",
            n as f64 / secs,
            base / secs
        );
    }

    // The tail: the first quarter of the rows takes 10x as long.
    let tail = Params {
        call_ms: 4,
        slow_below: n / 4,
        slow_factor: 10,
        range: KeyRange::all(),
    };
    println!(
        "\ntail (4 partitions on 4 slots; the first quarter 10x slower: 40 ms vs 4 ms a page):"
    );
    let without = walk(&store, &tail, 4, false).await;
    let with = walk(&store, &tail, 4, true).await;
    println!(
        "  without dynamic splitting: {:6.2} s ({} partitions)",
        without.wall.as_secs_f64(),
        without.partitions
    );
    println!(
        "  with dynamic splitting:    {:6.2} s ({} partitions), {:.2}x faster",
        with.wall.as_secs_f64(),
        with.partitions,
        without.wall.as_secs_f64() / with.wall.as_secs_f64()
    );
}
