//! Side-by-side: the keyset enumerator against a raw streaming `SELECT … ORDER BY id`
//! over the same MySQL/MariaDB table, interleaved round by round so machine noise
//! hits every variant alike; prints medians and ratios. The hand-written paged walks
//! are the floor of any resumable walk (a keyset enumerator must page).
//!
//! The table lives in a temporary database (`iterjob_bench_…`), dropped at the end.
//! The server is `ITERJOB_BENCH_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`.
//!
//! ```text
//! cargo run --release -p iterjob-mysql --example mysql_keyset_vs_raw -- [ROWS] [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iterjob_mysql::{Keyset, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, MySqlConnection, Row};

fn server() -> String {
    std::env::var("ITERJOB_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// The URL of database `name` on the server.
fn db_url(name: &str) -> String {
    let server = server();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// A pool on a fresh database `name` (pool settings as `MySqlStore`'s: sqlx's
/// defaults), with `n` products.
async fn setup(name: &str, n: i64) -> MySqlPool {
    let mut conn = MySqlConnection::connect(&server()).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.expect("close");
    let pool = MySqlPoolOptions::new()
        .max_connections(4)
        .connect(&db_url(name))
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TABLE products (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, \
         price DOUBLE NOT NULL) ENGINE = InnoDB",
    )
    .execute(&pool)
    .await
    .expect("create");
    const CHUNK: i64 = 10_000;
    let mut start = 1;
    while start <= n {
        let end = (start + CHUNK - 1).min(n);
        let values: Vec<String> = (start..=end)
            .map(|i| format!("({i}, 'product {i}', {})", i as f64 * 0.25))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO products (id, name, price) VALUES {}",
            values.join(", ")
        ))
        .execute(&pool)
        .await
        .expect("fill");
        start = end + 1;
    }
    // the same rows, keyed by a nullable column with a unique index: the keyset walks
    // it with the NULL-aware predicate (no row here is NULL)
    sqlx::query(
        "CREATE TABLE products_nullable (id BIGINT NULL, name VARCHAR(64) NOT NULL, \
         price DOUBLE NOT NULL, UNIQUE KEY products_nullable_id (id)) ENGINE = InnoDB",
    )
    .execute(&pool)
    .await
    .expect("create");
    sqlx::query("INSERT INTO products_nullable SELECT * FROM products")
        .execute(&pool)
        .await
        .expect("copy");
    sqlx::query("ANALYZE TABLE products, products_nullable")
        .execute(&pool)
        .await
        .expect("analyze");
    // let InnoDB's background purge of the insert settle before measuring
    tokio::time::sleep(Duration::from_secs(5)).await;
    pool
}

async fn drop_database(name: &str) {
    let mut conn = MySqlConnection::connect(&server()).await.expect("connect");
    sqlx::query(&format!("DROP DATABASE `{name}`"))
        .execute(&mut conn)
        .await
        .expect("drop database");
    conn.close().await.expect("close");
}

async fn raw(pool: &MySqlPool) -> i64 {
    let mut stream = sqlx::query("SELECT * FROM products ORDER BY id").fetch(pool);
    let mut sum = 0i64;
    while let Some(row) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

/// The raw stream with its one bound parameter: MySQL sends it as a prepared
/// statement (binary protocol), where a query without parameters goes as text.
async fn raw_prepared(pool: &MySqlPool) -> i64 {
    let mut stream = sqlx::query("SELECT * FROM products WHERE id > ? ORDER BY id")
        .bind(i64::MIN)
        .fetch(pool);
    let mut sum = 0i64;
    while let Some(row) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

/// Hand-written pages with the key written into the SQL text (text protocol).
async fn literal_pages(pool: &MySqlPool, page: i64) -> i64 {
    let mut conn = pool.acquire().await.expect("acquire");
    let (mut sum, mut last) = (0i64, 0i64);
    loop {
        let sql = format!("SELECT * FROM products WHERE id > {last} ORDER BY id LIMIT {page}");
        let mut rows = sqlx::raw_sql(&sql).fetch(&mut *conn);
        let mut seen = 0i64;
        while let Some(row) = rows.try_next().await.expect("row") {
            last = row.get::<i64, _>(0);
            sum += last;
            seen += 1;
        }
        if seen < page {
            return sum;
        }
    }
}

async fn rows(pool: &MySqlPool, page: usize, max_page: usize) -> i64 {
    rows_of(pool, "products", page, max_page).await
}

async fn rows_of(pool: &MySqlPool, table: &str, page: usize, max_page: usize) -> i64 {
    let keyset = Keyset::table(table)
        .max_page_size(max_page)
        .key("id")
        .batch_size(page);
    let mut stream = std::pin::pin!(keyset.rows(pool, None));
    let mut sum = 0i64;
    while let Some((row, _cursor)) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

async fn batches(pool: &MySqlPool, page: usize) -> i64 {
    let keyset = Keyset::table("products").key("id").batch_size(page);
    let mut stream = std::pin::pin!(keyset.batches(pool, None));
    let mut sum = 0i64;
    while let Some((rows, _cursor)) = stream.try_next().await.expect("page") {
        for row in &rows {
            sum += row.get::<i64, _>(0);
        }
    }
    sum
}

/// The floor of any paged walk: hand-written `WHERE id > ? ORDER BY id LIMIT ?`
/// pages on one held connection, each page streamed (rows handled as they arrive).
async fn manual_pages(pool: &MySqlPool, table: &str, page: i64) -> i64 {
    let mut conn = pool.acquire().await.expect("acquire");
    let (mut sum, mut last) = (0i64, 0i64);
    let sql = format!("SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?");
    loop {
        let mut rows = sqlx::query(&sql).bind(last).bind(page).fetch(&mut *conn);
        let mut seen = 0i64;
        while let Some(row) = rows.try_next().await.expect("row") {
            last = row.get::<i64, _>(0);
            sum += last;
            seen += 1;
        }
        if seen < page {
            return sum;
        }
    }
}

/// As [`manual_pages`], each page collected before its rows are read.
async fn collected_pages(pool: &MySqlPool, page: i64) -> i64 {
    let mut conn = pool.acquire().await.expect("acquire");
    let (mut sum, mut last) = (0i64, 0i64);
    loop {
        let rows = sqlx::query("SELECT * FROM products WHERE id > ? ORDER BY id LIMIT ?")
            .bind(last)
            .bind(page)
            .fetch_all(&mut *conn)
            .await
            .expect("page");
        for row in &rows {
            last = row.get::<i64, _>(0);
            sum += last;
        }
        if (rows.len() as i64) < page {
            return sum;
        }
    }
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
    let name = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let pool = setup(&name, n).await;
    let expected = n * (n + 1) / 2;
    let names = [
        "raw streaming SELECT",
        "keyset rows (default: pages 100 -> 100000, 1 s)",
        "keyset rows, fixed page 100",
        "keyset rows, fixed page 1000",
        "keyset batches, page 1000",
        "hand-written pages of 5000, streamed",
        "hand-written pages of 50000, streamed",
        "hand-written pages of 50000, collected",
        "keyset rows, fixed page 50000",
        "keyset batches, page 50000",
        "keyset rows default, nullable unique key",
        "hand-written pages of 50000, nullable unique key",
        "raw streaming SELECT, one bound parameter",
        "hand-written pages of 50000, key as literal",
    ];
    // `ITERJOB_BENCH_VARIANTS=0,1,5`: run only these (the raw walk, 0, always runs)
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
                1 => rows(&pool, 100, iterjob_mysql::DEFAULT_MAX_PAGE_SIZE).await,
                2 => rows(&pool, 100, 100).await,
                3 => rows(&pool, 1000, 1000).await,
                4 => batches(&pool, 1000).await,
                5 => manual_pages(&pool, "products", 5000).await,
                6 => manual_pages(&pool, "products", 50_000).await,
                7 => collected_pages(&pool, 50_000).await,
                8 => rows(&pool, 50_000, 50_000).await,
                9 => batches(&pool, 50_000).await,
                10 => {
                    let max = iterjob_mysql::DEFAULT_MAX_PAGE_SIZE;
                    rows_of(&pool, "products_nullable", 100, max).await
                }
                11 => manual_pages(&pool, "products_nullable", 50_000).await,
                12 => raw_prepared(&pool).await,
                _ => literal_pages(&pool, 50_000).await,
            };
            slot.push(start.elapsed());
            assert_eq!(sum, expected, "{} saw every row", names[i]);
        }
    }
    pool.close().await;
    drop_database(&name).await;
    let base = median(times[0].clone());
    println!(
        "{n} rows, {rounds} interleaved rounds, medians; {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    println!(
        "{:<48} {:>10} {:>14} {:>18}",
        "variant", "time", "rows/s", "throughput vs raw"
    );
    for (name, t) in names.iter().zip(times) {
        if t.is_empty() {
            continue;
        }
        let m = median(t);
        println!(
            "{name:<48} {:>8.0}ms {:>14.0} {:>17.2}x",
            m.as_secs_f64() * 1000.0,
            n as f64 / m.as_secs_f64(),
            base.as_secs_f64() / m.as_secs_f64()
        );
    }
}
