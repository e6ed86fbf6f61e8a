//! Side-by-side: the keyset enumerator against a raw streaming `SELECT … ORDER BY id`
//! over the same PostgreSQL table, and against the physical floor in PostgreSQL's
//! own Rust client (`tokio-postgres`): the same query streamed, and the same rows
//! as `COPY … TO STDOUT`. Interleaved round by round so machine noise hits every
//! variant alike; prints medians and ratios to the raw sqlx walk and to the fastest
//! native one.
//!
//! The table lives in a temporary schema (`iterjob_bench_…`), dropped at the end.
//! The server is `ITERJOB_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
//!
//! ```text
//! cargo run --release -p iterjob-postgres --example pg_keyset_vs_raw -- [ROWS] [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iterjob_postgres::{Keyset, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

fn url() -> String {
    std::env::var("ITERJOB_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A pool whose `search_path` is `schema` (pool settings as [`PgStore`]'s:
/// sqlx's defaults, so each acquire checks the connection), with `n` products.
///
/// [`PgStore`]: iterjob_postgres::PgStore
async fn setup(schema: &str, n: i64) -> PgPool {
    let mut conn = PgConnection::connect(&url()).await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .expect("create schema");
    conn.close().await.expect("close");
    let options: PgConnectOptions = url().parse().expect("URL");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.options([("search_path", schema)]))
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TABLE products (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         price DOUBLE PRECISION NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create");
    sqlx::query(
        "INSERT INTO products (id, name, price) \
         SELECT i, 'product ' || i, i * 0.25 FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(n)
    .execute(&pool)
    .await
    .expect("fill");
    // the same rows, keyed by a nullable column with a unique index: the keyset walks
    // it with the NULL-aware predicate (no row here is NULL)
    sqlx::query(
        "CREATE TABLE products_nullable (id BIGINT NULL UNIQUE, name TEXT NOT NULL, \
         price DOUBLE PRECISION NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create");
    sqlx::query("INSERT INTO products_nullable SELECT * FROM products")
        .execute(&pool)
        .await
        .expect("copy");
    sqlx::query("VACUUM ANALYZE products_nullable")
        .execute(&pool)
        .await
        .expect("vacuum");
    sqlx::query("VACUUM ANALYZE products")
        .execute(&pool)
        .await
        .expect("vacuum");
    pool
}

async fn drop_schema(schema: &str) {
    let mut conn = PgConnection::connect(&url()).await.expect("connect");
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .expect("drop schema");
    conn.close().await.expect("close");
}

async fn raw(pool: &PgPool) -> i64 {
    let mut stream = sqlx::query("SELECT * FROM products ORDER BY id").fetch(pool);
    let mut sum = 0i64;
    while let Some(row) = stream.try_next().await.expect("row") {
        sum += row.get::<i64, _>(0);
    }
    sum
}

async fn rows(pool: &PgPool, page: usize, max_page: usize, hold: bool) -> i64 {
    rows_of(pool, "products", page, max_page, hold).await
}

async fn rows_of(pool: &PgPool, table: &str, page: usize, max_page: usize, hold: bool) -> i64 {
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

async fn batches(pool: &PgPool, page: usize, hold: bool) -> i64 {
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

/// The floor of any paged walk: hand-written `WHERE id > $1 ORDER BY id LIMIT $2`
/// pages on one held connection, reading only the id; `stream` reads each page as a
/// stream (rows handled as they arrive) instead of collecting it first.
async fn manual_pages(pool: &PgPool, page: i64, stream: bool) -> i64 {
    let mut conn = pool.acquire().await.expect("acquire");
    let (mut sum, mut last) = (0i64, 0i64);
    loop {
        let query = sqlx::query("SELECT * FROM products WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(last)
            .bind(page);
        let mut seen = 0i64;
        if stream {
            let mut rows = query.fetch(&mut *conn);
            while let Some(row) = rows.try_next().await.expect("row") {
                last = row.get::<i64, _>(0);
                sum += last;
                seen += 1;
            }
        } else {
            for row in query.fetch_all(&mut *conn).await.expect("page") {
                last = row.get::<i64, _>(0);
                sum += last;
                seen += 1;
            }
        }
        if seen < page {
            return sum;
        }
    }
}

/// The native client's streamed query: `tokio-postgres`, one connection, the id of
/// each row decoded (the other columns stay bytes until read).
async fn native_query(client: &tokio_postgres::Client, schema: &str) -> i64 {
    let sql = format!("SELECT * FROM \"{schema}\".products ORDER BY id");
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let stream = client.query_raw(&sql, params).await.expect("query");
    let mut stream = std::pin::pin!(stream);
    let mut sum = 0i64;
    while let Some(row) = stream.try_next().await.expect("row") {
        sum += row.get::<_, i64>(0);
    }
    sum
}

/// The same rows as `COPY (SELECT …) TO STDOUT`: no per-row protocol beyond one
/// CopyData message, the id parsed from the text line's first field.
async fn native_copy(client: &tokio_postgres::Client, schema: &str) -> i64 {
    let sql = format!("COPY (SELECT * FROM \"{schema}\".products ORDER BY id) TO STDOUT");
    let stream = client.copy_out(&sql).await.expect("copy");
    let mut stream = std::pin::pin!(stream);
    let mut sum = 0i64;
    while let Some(line) = stream.try_next().await.expect("copy data") {
        // PostgreSQL sends one CopyData message per row
        let mut id = 0i64;
        for &b in line.iter().take_while(|&&b| b != b'\t') {
            id = id * 10 + i64::from(b - b'0');
        }
        sum += id;
    }
    sum
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
    let schema = format!("iterjob_bench_{:016x}", rand::random::<u64>());
    let pool = setup(&schema, n).await;
    let expected = n * (n + 1) / 2;
    let names = [
        "raw streaming SELECT",
        "keyset rows (default: pages 100 -> 250000, 1 s)",
        "keyset rows, fixed page 100",
        "keyset rows, fixed page 1000",
        "keyset rows default, acquire per page",
        "keyset batches, page 100",
        "keyset batches, page 1000",
        "hand-written pages of 5000, collected",
        "hand-written pages of 5000, streamed",
        "keyset rows, pages 100 -> 50000",
        "keyset rows, pages 100 -> 200000",
        "hand-written pages of 50000, collected",
        "keyset rows default, nullable unique key",
        "native: tokio-postgres streamed SELECT",
        "native: tokio-postgres COPY TO STDOUT",
    ];
    const NATIVE: [usize; 2] = [13, 14];
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("tokio-postgres connect");
    let connection = tokio::spawn(connection);
    // `ITERJOB_BENCH_VARIANTS=0,1,7`: run only these (the raw walk, 0, always runs)
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
                1 => rows(&pool, 100, iterjob_postgres::DEFAULT_MAX_PAGE_SIZE, true).await,
                2 => rows(&pool, 100, 100, true).await,
                3 => rows(&pool, 1000, 1000, true).await,
                4 => rows(&pool, 100, 5000, false).await,
                5 => batches(&pool, 100, true).await,
                6 => batches(&pool, 1000, true).await,
                7 => manual_pages(&pool, 5000, false).await,
                8 => manual_pages(&pool, 5000, true).await,
                9 => rows(&pool, 100, 50_000, true).await,
                10 => rows(&pool, 100, 200_000, true).await,
                11 => manual_pages(&pool, 50_000, false).await,
                12 => {
                    let max = iterjob_postgres::DEFAULT_MAX_PAGE_SIZE;
                    rows_of(&pool, "products_nullable", 100, max, true).await
                }
                13 => native_query(&client, &schema).await,
                _ => native_copy(&client, &schema).await,
            };
            slot.push(start.elapsed());
            assert_eq!(sum, expected, "{} saw every row", names[i]);
        }
    }
    drop(client);
    let _ = connection.await;
    pool.close().await;
    drop_schema(&schema).await;
    let base = median(times[0].clone());
    // the fastest native walk that ran
    let floor = NATIVE
        .iter()
        .filter(|&&i| !times[i].is_empty())
        .map(|&i| median(times[i].clone()))
        .min();
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
