//! Walking a table with [`Keyset`] against a raw streaming `SELECT … ORDER BY id`.
//!
//! `ITERJOB_BENCH_ROWS` sets the table size (default 1 000 000). The table is built
//! once, in a temporary file.

#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::TryStreamExt;
use iterjob_sqlite::{Keyset, SqliteStore};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

fn rows() -> i64 {
    std::env::var("ITERJOB_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

async fn setup(dir: &tempfile::TempDir, n: i64) -> SqlitePool {
    let path = dir.path().join("bench.db");
    let options = SqliteStore::options(path.to_str().unwrap()).unwrap();
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // a recursive CTE fills the table in one statement
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) \
         INSERT INTO products (id, name, price) SELECT i, 'product ' || i, i * 0.25 FROM seq",
    )
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    pool
}

fn walk(c: &mut Criterion) {
    let n = rows();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = runtime.block_on(setup(&dir, n));

    let mut group = c.benchmark_group("walk");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    group.bench_function("raw_fetch", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut stream = sqlx::query("SELECT * FROM products ORDER BY id").fetch(&pool);
                let mut sum = 0i64;
                while let Some(row) = stream.try_next().await.unwrap() {
                    sum += row.get::<i64, _>(0);
                }
                assert!(sum > 0);
            })
        })
    });
    for batch in [100usize, 1000, 5000] {
        group.bench_function(format!("keyset_rows_batch_{batch}"), |b| {
            let keyset = Keyset::table("products").key("id").batch_size(batch);
            b.iter(|| {
                runtime.block_on(async {
                    let mut stream = std::pin::pin!(keyset.rows(&pool, None));
                    let mut sum = 0i64;
                    while let Some((row, _cursor)) = stream.try_next().await.unwrap() {
                        sum += row.get::<i64, _>(0);
                    }
                    assert!(sum > 0);
                })
            })
        });
    }
    group.bench_function("keyset_batches_1000", |b| {
        let keyset = Keyset::table("products").key("id").batch_size(1000);
        b.iter(|| {
            runtime.block_on(async {
                let mut stream = std::pin::pin!(keyset.batches(&pool, None));
                let mut sum = 0i64;
                while let Some((rows, _cursor)) = stream.try_next().await.unwrap() {
                    for row in &rows {
                        sum += row.get::<i64, _>(0);
                    }
                }
                assert!(sum > 0);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, walk);
criterion_main!(benches);
