//! Side-by-side: the keyset enumerator against a raw streaming `SELECT … ORDER BY id`
//! over the same SQLite table, and against the physical floor: the same query stepped
//! by SQLite's own C API through `rusqlite` (no async hand-over, a column decoded only
//! when read). Interleaved round by round so machine noise hits every variant alike;
//! prints medians and ratios to both.
//!
//! ```text
//! cargo run --release -p iterjob-sqlite --example sqlite_keyset_vs_raw -- [ROWS] [ROUNDS]
//! ```
//!
//! `ITERJOB_BENCH_VARIANTS=1,8` runs only those variants (the raw walk, 0, always runs).

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iterjob_sqlite::{Keyset, SqliteStore};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

async fn setup(path: &std::path::Path, n: i64) -> SqlitePool {
    let options = SqliteStore::options(path.to_str().expect("utf-8")).expect("options");
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create");
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) \
         INSERT INTO products (id, name, price) SELECT i, 'product ' || i, i * 0.25 FROM seq",
    )
    .bind(n)
    .execute(&pool)
    .await
    .expect("fill");
    // the same rows, keyed by a nullable column with a unique index: the keyset walks
    // it with the NULL-aware predicate (no row here is NULL)
    sqlx::query(
        "CREATE TABLE products_nullable (id INTEGER NULL UNIQUE, name TEXT NOT NULL, \
         price REAL NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create");
    sqlx::query("INSERT INTO products_nullable SELECT * FROM products")
        .execute(&pool)
        .await
        .expect("copy");
    pool
}

async fn raw(pool: &SqlitePool) -> i64 {
    let mut stream = sqlx::query("SELECT * FROM products ORDER BY id").fetch(pool);
    let mut sum = 0i64;
    while let Some(row) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

async fn rows(pool: &SqlitePool, page: usize, max_page: usize, hold: bool) -> i64 {
    rows_of(pool, "products", page, max_page, hold).await
}

async fn rows_of(pool: &SqlitePool, table: &str, page: usize, max_page: usize, hold: bool) -> i64 {
    let keyset = Keyset::table(table)
        .max_page_size(max_page)
        .key("id")
        .batch_size(page)
        .hold_connection(hold);
    let mut stream = std::pin::pin!(keyset.rows(pool, None));
    let mut sum = 0i64;
    while let Some((row, _cursor)) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

async fn batches(pool: &SqlitePool, page: usize, hold: bool) -> i64 {
    let keyset = Keyset::table("products")
        .key("id")
        .batch_size(page)
        .hold_connection(hold);
    let mut stream = std::pin::pin!(keyset.batches(pool, None));
    let mut sum = 0i64;
    while let Some((rows, _cursor)) = stream.try_next().await.expect("page") {
        for row in &rows {
            sum += row.get::<i64, _>(0);
        }
    }
    sum
}

/// The native loop: `rusqlite` steps the statement on this thread and reads the id
/// of each row (the other columns stay undecoded, as a C loop would leave them).
async fn native(path: &std::path::Path) -> i64 {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open");
        let mut statement = conn
            .prepare("SELECT * FROM products ORDER BY id")
            .expect("prepare");
        let mut rows = statement.query([]).expect("query");
        let mut sum = 0i64;
        while let Some(row) = rows.next().expect("row") {
            sum += row.get::<_, i64>(0).expect("id");
        }
        sum
    })
    .await
    .expect("native walk")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let pool = setup(&path, n).await;
    let expected = n * (n + 1) / 2;
    let names = [
        "raw streaming SELECT",
        "keyset rows (default: pages 100 -> 5000)",
        "keyset rows, fixed page 100",
        "keyset rows, fixed page 1000",
        "keyset rows default, acquire per page",
        "keyset batches, page 100",
        "keyset batches, page 1000",
        "keyset rows default, nullable unique key",
        "native: rusqlite stepping the same SELECT",
    ];
    const NATIVE: usize = 8;
    // `ITERJOB_BENCH_VARIANTS=1,8`: run only these (the raw walk, 0, always runs)
    let only: Option<Vec<usize>> = std::env::var("ITERJOB_BENCH_VARIANTS")
        .ok()
        .map(|v| v.split(',').filter_map(|i| i.trim().parse().ok()).collect());
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, slot) in times.iter_mut().enumerate() {
            if i != 0 && only.as_ref().is_some_and(|only| !only.contains(&i)) {
                continue;
            }
            let start = Instant::now();
            let sum = match i {
                0 => raw(&pool).await,
                1 => rows(&pool, 100, 5000, true).await,
                2 => rows(&pool, 100, 100, true).await,
                3 => rows(&pool, 1000, 1000, true).await,
                4 => rows(&pool, 100, 5000, false).await,
                5 => batches(&pool, 100, true).await,
                6 => batches(&pool, 1000, true).await,
                7 => rows_of(&pool, "products_nullable", 100, 5000, true).await,
                _ => native(&path).await,
            };
            slot.push(start.elapsed());
            assert_eq!(sum, expected, "{} saw every row", names[i]);
        }
    }
    let base = median(times[0].clone());
    let floor = (!times[NATIVE].is_empty()).then(|| median(times[NATIVE].clone()));
    println!(
        "{n} rows, {rounds} interleaved rounds, medians; {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    println!(
        "{:<42} {:>10} {:>14} {:>12} {:>12}",
        "variant", "time", "rows/s", "vs raw sqlx", "vs native"
    );
    for (name, t) in names.iter().zip(times) {
        if t.is_empty() {
            continue;
        }
        let m = median(t);
        let native = floor.map_or("-".to_string(), |f| {
            format!("{:.2}x", f.as_secs_f64() / m.as_secs_f64())
        });
        println!(
            "{name:<42} {:>8.0}ms {:>14.0} {:>11.2}x {native:>12}",
            m.as_secs_f64() * 1000.0,
            n as f64 / m.as_secs_f64(),
            base.as_secs_f64() / m.as_secs_f64()
        );
    }
}
