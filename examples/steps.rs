//! A migration written as steps: copy every order into a new table in batches, then
//! build the new table's index once, then check the copy. One durable cursor
//! records the step and the position inside it, so the job resumes in the right
//! step at the right batch, whatever interrupts it.
//!
//! The worker here gives each run a 150 ms time slice, so the job is interrupted
//! and resumed many times; the example prints the stored cursor after each run.
//!
//! ```text
//! cargo run -p iterjob-examples --example steps
//! ```

use std::sync::Arc;
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::steps::{Action, Step, Stepped, Steps, StepsJob};
use iterjob::{JobContext, JobError, JobState, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

#[derive(Serialize, Deserialize)]
struct Params {
    /// The highest order id to copy.
    last_id: i64,
}

/// Step 1: copy orders in batches of 50 ids, each batch in one statement.
struct CopyOrders {
    pool: SqlitePool,
}

impl Step<Params> for CopyOrders {
    type Item = Vec<i64>;
    type Cursor = i64;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64> + 'static, JobError> {
        Ok(enumerator::range(1..params.last_id + 1, cursor).batched(50))
    }

    async fn process(&self, _ctx: &JobContext<Params>, ids: Vec<i64>) -> Result<(), JobError> {
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        sqlx::query(
            "INSERT OR REPLACE INTO orders_v2 (id, cents) \
             SELECT id, amount * 100 FROM orders WHERE id BETWEEN ? AND ?",
        )
        .bind(first)
        .bind(last)
        .execute(&self.pool)
        .await?;
        tokio::time::sleep(Duration::from_millis(10)).await; // a busier database
        Ok(())
    }

    fn count_items(&self, ids: &Vec<i64>) -> u64 {
        ids.len() as u64
    }
}

/// Step 2: build the index once the rows are there (safe to repeat).
struct BuildIndex {
    pool: SqlitePool,
}

impl Action<Params> for BuildIndex {
    async fn run(&self, _ctx: &JobContext<Params>) -> Result<(), JobError> {
        sqlx::query("CREATE INDEX IF NOT EXISTS orders_v2_cents ON orders_v2 (cents)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Step 3: check the copy; a mismatch fails the job for an operator to look at.
struct Verify {
    pool: SqlitePool,
}

impl Action<Params> for Verify {
    async fn run(&self, ctx: &JobContext<Params>) -> Result<(), JobError> {
        let copied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders_v2")
            .fetch_one(&self.pool)
            .await?;
        if copied != ctx.params.last_id {
            return Err(JobError::fatal(format!(
                "copied {copied} orders, expected {}",
                ctx.params.last_id
            )));
        }
        Ok(())
    }
}

struct MigrateOrders {
    pool: SqlitePool,
}

impl StepsJob for MigrateOrders {
    const KIND: &'static str = "migrate_orders";
    type Params = Params;

    fn steps(&self) -> Steps<Params> {
        let pool = self.pool.clone();
        Steps::new()
            .step("copy_orders", CopyOrders { pool: pool.clone() })
            .action("build_index", BuildIndex { pool: pool.clone() })
            .action("verify", Verify { pool })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::connect(&dir.path().join("steps.db").display().to_string()).await?;
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("CREATE TABLE orders_v2 (id INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query(
        "WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < 3000) \
         INSERT INTO orders SELECT id, id % 97 FROM n",
    )
    .execute(&pool)
    .await?;

    let id = store
        .job_insert(&NewJob::new(
            "migrate_orders",
            serde_json::json!({ "last_id": 3000 }),
        ))
        .await?;
    let registry = Registry::new().with(Stepped::new(MigrateOrders { pool: pool.clone() }));
    let mut config = WorkerConfig::default();
    config.max_runtime = Duration::from_millis(150);
    config.poll_interval = Duration::from_millis(20);
    let worker = Arc::new(Worker::new(Arc::new(store.clone()), registry, config)?);
    let runner = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run_until_idle().await }
    });

    // watch the stored cursor move through the steps
    let mut last = None;
    loop {
        let job = store.job_get(id).await?.expect("the job");
        let cursor = job.cursor.as_ref().map(|c| c.to_string());
        if cursor != last {
            println!(
                "run {:>2}: {:>4} items done, cursor {}",
                job.runs,
                job.items_done,
                cursor.as_deref().unwrap_or("(none)")
            );
            last = cursor;
        }
        if job.state.is_finished() {
            println!(
                "job {id} {}: {} runs, {} interruptions{}",
                job.state,
                job.runs,
                job.interruptions,
                job.last_error
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
            anyhow::ensure!(job.state == JobState::Completed, "the migration failed");
            break;
        }
        if runner.is_finished() {
            // the worker is done: the job must be too (read again: it may have
            // finished since the read above)
            let job = store.job_get(id).await?.expect("the job");
            anyhow::ensure!(
                job.state.is_finished(),
                "the worker stopped with the job {} at item {}",
                job.state,
                job.items_done
            );
            continue;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    runner.await??;
    Ok(())
}
