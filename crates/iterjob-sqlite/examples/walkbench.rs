//! scratch
use std::time::{Duration, Instant};
use futures::TryStreamExt;
use iterjob_sqlite::{Keyset, SqliteStore};
use sqlx::Row;
use sqlx::sqlite::SqlitePoolOptions;
#[tokio::main]
async fn main() {
    let n: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let options = SqliteStore::options(path.to_str().unwrap()).unwrap();
    let pool = SqlitePoolOptions::new().connect_with(options).await.unwrap();
    sqlx::query("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL)").execute(&pool).await.unwrap();
    sqlx::query("WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) INSERT INTO products (id, name, price) SELECT i, 'product ' || i, i * 0.25 FROM seq").bind(n).execute(&pool).await.unwrap();
    let names = ["raw", "paged-all1000", "rows100", "rows1000", "rows5000", "batches1000"];
    let mut best = vec![Duration::MAX; names.len()];
    for _round in 0..7 {
        for (v, b) in best.iter_mut().enumerate() {
            let t = Instant::now();
            let mut sum = 0i64;
            match v {
                0 => { let mut s = sqlx::query("SELECT * FROM products ORDER BY id").fetch(&pool);
                       while let Some(row) = s.try_next().await.unwrap() { sum += row.get::<i64, _>(0); } }
                1 => { let mut last = 0i64; loop {
                        let rows = sqlx::query("SELECT * FROM products WHERE id > ? ORDER BY id LIMIT ?").bind(last).bind(1000).fetch_all(&pool).await.unwrap();
                        for row in &rows { let id = row.get::<i64, _>(0); sum += id; last = id; }
                        if rows.len() < 1000 { break; } } }
                2 | 3 | 4 => { let ks = Keyset::table("products").key("id").batch_size([100, 1000, 5000][v - 2]);
                       let mut s = std::pin::pin!(ks.rows(&pool, None));
                       while let Some((row, _c)) = s.try_next().await.unwrap() { sum += row.get::<i64, _>(0); } }
                _ => { let ks = Keyset::table("products").key("id").batch_size(1000);
                       let mut s = std::pin::pin!(ks.batches(&pool, None));
                       while let Some((rows, _c)) = s.try_next().await.unwrap() { for row in &rows { sum += row.get::<i64, _>(0); } } }
            }
            assert_eq!(sum, n * (n + 1) / 2);
            *b = (*b).min(t.elapsed());
        }
    }
    for (name, b) in names.iter().zip(&best) {
        println!("{name:>14}: {b:?} ({:.2}x of raw)", best[0].as_secs_f64() / b.as_secs_f64());
    }
}
