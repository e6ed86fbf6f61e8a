//! A realistic backfill as a user's own binary: a new `orders.total_cents` column is
//! filled from each order's line items, 500 orders per transaction, walking the
//! table by primary key with the keyset enumerator. The binary registers its job kind
//! and hands control to the iterjob command line, so it gets `worker`, `enqueue`,
//! `jobs`, `show`, `pause`, `resume`, `cancel` and `retry` for its own kind.
//!
//! ```text
//! cargo run -p iterjob-examples --example backfill -- seed --orders 50000
//! cargo run -p iterjob-examples --example backfill -- enqueue backfill_order_totals
//! cargo run -p iterjob-examples --example backfill -- worker --until-idle
//! cargo run -p iterjob-examples --example backfill -- jobs
//! ```
//!
//! Stop the worker with Ctrl-C (or `kill -9` it) at any point and start it again: it
//! resumes from the last committed order id, and no order is filled twice. The pool
//! the job uses is built once, by the app's setup step, and held by the job value.

use std::process::ExitCode;

use iterjob::enumerator::{Enumerator, EnumeratorExt};
use iterjob::{JobContext, JobError, KindSettings, Registry};
use iterjob_sqlite::{Keyset, KeysetCursor, SqlitePool, Transactional, TransactionalJob};
use serde::{Deserialize, Serialize};
use sqlx::Sqlite;

/// Fills `orders.total_cents` from `line_items`. The job value is the state every
/// run shares: here the application's pool, built once by the app's setup step.
struct BackfillOrderTotals {
    pool: SqlitePool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Orders per transaction.
    #[serde(default = "default_batch")]
    batch_size: usize,
}

fn default_batch() -> usize {
    500
}

/// One order id, as the keyset enumerator decodes it.
#[derive(sqlx::FromRow)]
struct OrderId {
    id: i64,
}

impl TransactionalJob<Sqlite> for BackfillOrderTotals {
    const KIND: &'static str = "backfill_order_totals";
    type Params = Params;
    type Cursor = KeysetCursor;
    type Item = Vec<OrderId>;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<KeysetCursor>,
    ) -> Result<impl Enumerator<Vec<OrderId>, KeysetCursor>, JobError> {
        Ok(Keyset::table("orders")
            .key("id")
            .columns(["id"])
            .filter("total_cents IS NULL")
            .batch_size(params.batch_size)
            .rows_as::<OrderId>(&self.pool, cursor)
            .batched(params.batch_size))
    }

    fn count_items(&self, batch: &Vec<OrderId>) -> u64 {
        batch.len() as u64
    }

    async fn total(&self, _params: &Params) -> Result<Option<u64>, JobError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE total_cents IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(n as u64))
    }

    /// The batch's updates commit in the same transaction as the cursor past it:
    /// each order is filled exactly once, even when the worker is killed.
    async fn process(
        &self,
        _ctx: &JobContext<Params>,
        batch: Vec<OrderId>,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        for order in &batch {
            sqlx::query(
                "UPDATE orders SET total_cents =
                   (SELECT COALESCE(SUM(quantity * unit_cents), 0) FROM line_items WHERE order_id = ?)
                 WHERE id = ?",
            )
            .bind(order.id)
            .bind(order.id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default()
            .max_attempts(5)
            .max_runtime(std::time::Duration::from_secs(120))
    }
}

/// `seed --orders N [--database-url URL]`: creates the example's tables and data.
async fn seed(args: &[String]) -> anyhow::Result<()> {
    let mut orders = 50_000i64;
    let mut url =
        std::env::var("ITERJOB_DATABASE_URL").unwrap_or_else(|_| "sqlite://iterjob.db".to_string());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--orders" => {
                orders = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow::anyhow!("--orders needs a positive number"))?
            }
            "--database-url" => {
                url = it
                    .next()
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("--database-url needs a value"))?
            }
            other => anyhow::bail!("unknown seed argument `{other}`; use --orders N"),
        }
    }
    let store = iterjob_sqlite::SqliteStore::connect(&url).await?;
    let pool = store.pool();
    sqlx::query("DROP TABLE IF EXISTS line_items")
        .execute(pool)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS orders")
        .execute(pool)
        .await?;
    sqlx::query(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total_cents INTEGER)",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "CREATE TABLE line_items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id),
                                  quantity INTEGER NOT NULL, unit_cents INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let mut tx = pool.begin().await?;
    for id in 1..=orders {
        sqlx::query("INSERT INTO orders (id, customer) VALUES (?, ?)")
            .bind(id)
            .bind(format!("customer-{}", id % 977))
            .execute(&mut *tx)
            .await?;
        for line in 0..(id % 4 + 1) {
            sqlx::query("INSERT INTO line_items (order_id, quantity, unit_cents) VALUES (?, ?, ?)")
                .bind(id)
                .bind(line + 1)
                .bind((id * 31 + line * 7) % 5000)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    println!("seeded {orders} orders in {url}; now enqueue backfill_order_totals and run a worker");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("seed") {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        return match runtime.block_on(seed(&args[2..])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    iterjob_cli::App::new("backfill")
        .about("Fills orders.total_cents from line_items, resumably")
        .version(env!("CARGO_PKG_VERSION"))
        // runs once, inside the runtime, after the job store is open
        .setup(|setup| async move {
            // the orders live in the job store's SQLite file, so the backfill's
            // writes and its cursor commit in one transaction
            let store = setup.sqlite()?;
            let job = BackfillOrderTotals {
                pool: store.pool().clone(),
            };
            Ok(Registry::new().with(Transactional::new(job, store)))
        })
        .run()
}
