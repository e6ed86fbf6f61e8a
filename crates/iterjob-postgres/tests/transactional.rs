//! Transactional iteration on PostgreSQL, what is PostgreSQL's own: an item's future
//! dropped at any point leaves no transaction open on its connection. The behaviour
//! every SQL store shares is the testkit's transactional suite (`tests/suites.rs`). Each test works in a
//! schema of its own (the store's tables and the `effects` table), dropped at the
//! end; without a reachable server the tests skip, or fail when `CI` is set.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::store::{ClaimRequest, JobId, NewJob};
use iterjob::{Job, JobContext, JobError, Store};
use iterjob_postgres::sqlx::{self, Postgres, Transaction};
use iterjob_postgres::{PgStore, Transactional, TransactionalJob};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Writes one row per item into `effects`, in batches.
struct WriteEffects {
    /// The effects table, schema-qualified.
    table: String,
    /// Stops the enumerator before yielding this item until `release` is notified
    /// (announcing it on `reached`): outside any transaction.
    gate: Option<Gate>,
}

struct Gate {
    at: i64,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    n: i64,
    batch: usize,
    /// Work time per batch, inside the transaction.
    delay_ms: u64,
    /// Fail the batch holding this item, after writing its effects, on the first
    /// attempt.
    #[serde(default)]
    fail_once_at: Option<i64>,
}

impl TransactionalJob<sqlx::Postgres> for WriteEffects {
    const KIND: &'static str = "write_effects";
    type Params = Params;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        let gate = self
            .gate
            .as_ref()
            .map(|g| (g.at, Arc::clone(&g.reached), Arc::clone(&g.release)));
        let items = enumerator::range(0..params.n, cursor).then(move |step| {
            let gate = gate.clone();
            async move {
                if let (Ok((item, _)), Some((at, reached, release))) = (&step, gate)
                    && *item == at
                {
                    reached.notify_one();
                    release.notified().await;
                }
                step
            }
        });
        Ok(items.batched(params.batch))
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    async fn process(
        &self,
        ctx: &JobContext<Params>,
        batch: Vec<i64>,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), JobError> {
        let written = batch.clone();
        for item in batch {
            sqlx::query(&format!(
                "INSERT INTO {} (item, run) VALUES ($1, $2)",
                self.table
            ))
            .bind(item)
            .bind(i64::from(ctx.run))
            .execute(&mut **tx)
            .await?;
        }
        if ctx.params.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.params.delay_ms)).await;
        }
        if ctx.attempt == 0
            && let Some(at) = ctx.params.fail_once_at
            && written.contains(&at)
        {
            return Err(JobError::retryable(format!("failing at item {at}")));
        }
        Ok(())
    }
}

impl WriteEffects {
    /// Writes into the `effects` table of `store`'s schema.
    fn new(store: &PgStore) -> Self {
        WriteEffects {
            table: format!("\"{}\".effects", store.schema()),
            gate: None,
        }
    }
}

async fn create_effects(store: &PgStore) {
    sqlx::query(&format!(
        "CREATE TABLE \"{}\".effects (item BIGINT NOT NULL, run BIGINT NOT NULL)",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .expect("create effects");
}

async fn enqueue(store: &PgStore, params: Params) -> JobId {
    let job = Transactional::new(WriteEffects::new(store), store.clone());
    store
        .job_insert(&NewJob::of(&job, &params).expect("params"))
        .await
        .expect("enqueue")
}

/// The schema-qualified name of `store`'s table `name`.
fn table(store: &PgStore, name: &str) -> String {
    format!("\"{}\".{name}", store.schema())
}

/// (effects, distinct items, items written more than once)
async fn effects(store: &PgStore) -> (i64, i64, i64) {
    let effects = table(store, "effects");
    sqlx::query_as(&format!(
        "SELECT (SELECT COUNT(*) FROM {effects}), (SELECT COUNT(DISTINCT item) FROM {effects}),
                (SELECT COUNT(*) FROM (SELECT item FROM {effects} GROUP BY item HAVING COUNT(*) > 1) AS r)"
    ))
    .fetch_one(store.pool())
    .await
    .expect("effects")
}

/// The stored cursor and count name exactly the committed effects (read in one
/// snapshot: a run being dropped may still be committing).
async fn assert_consistent(store: &PgStore, id: JobId) {
    let effects = table(store, "effects");
    let (total, distinct, repeated, items_done, cursor): (
        i64,
        i64,
        i64,
        i64,
        Option<serde_json::Value>,
    ) = sqlx::query_as(&format!(
        "SELECT (SELECT COUNT(*) FROM {effects}), (SELECT COUNT(DISTINCT item) FROM {effects}),
                (SELECT COUNT(*) FROM (SELECT item FROM {effects} GROUP BY item HAVING COUNT(*) > 1) AS r),
                items_done, cursor
         FROM {} WHERE id = $1",
        table(store, "jobs")
    ))
    .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("snapshot");
    assert_eq!(repeated, 0, "no item's effect twice");
    assert_eq!(total, distinct);
    assert_eq!(items_done, total, "items_done = committed effects");
    let cursor: i64 = cursor.map_or(0, |c| c.as_i64().expect("an integer cursor"));
    assert_eq!(cursor, total, "cursor just past the committed effects");
}

/// A future that is ready once `deadline` passed, checking the clock at every poll
/// (tokio's timers tick in milliseconds, longer than an item's round trips).
struct SpinUntil(std::time::Instant);

impl std::future::Future for SpinUntil {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if std::time::Instant::now() >= self.0 {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// An item's future dropped at any point — while its transaction begins, writes the
/// cursor, does the work or commits, as a worker aborting its runs at the shutdown
/// deadline or a dropped worker does — leaves no transaction open on the pool's
/// connection, and the stored cursor names exactly the committed effects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_item_leaves_no_transaction_open() {
    // one connection: whatever a dropped item left on it, the next statement sees
    let Some(temp) = common::TempSchema::with(|options| options.max_connections(1)).await else {
        return;
    };
    let store = &temp.store;
    create_effects(store).await;
    let n = 100_000;
    let params = || Params {
        n,
        batch: 1,
        delay_ms: 0,
        fail_once_at: None,
    };
    let id = enqueue(store, params()).await;
    let claimed = store
        .job_claim(&ClaimRequest {
            worker_id: "test".into(),
            queues: vec!["default".into()],
            kinds: vec![WriteEffects::KIND.into()],
            limit: 1,
            lease: Duration::from_secs(300),
        })
        .await
        .expect("claim")
        .pop()
        .expect("claimed");
    let job = Transactional::new(WriteEffects::new(store), store.clone());
    let ctx = JobContext {
        params: params(),
        job_id: id,
        attempt: 0,
        run: 1,
        queue: "default".into(),
        run_token: claimed.token,
        lease: std::time::Duration::from_secs(30),
        lease_renewal: iterjob::LeaseRenewal::default(),
    };
    // how long one item takes here, to spread the drops over all of it
    let mut times = Vec::new();
    for item in 0..5 {
        let started = std::time::Instant::now();
        job.process(&ctx, (vec![item], item + 1))
            .await
            .expect("commit");
        times.push(started.elapsed());
    }
    times.sort();
    // drops spread over [0, spread): grown after a drop, shrunk after a commit, so
    // it settles near twice an item's time and the drops land anywhere in an item
    let mut spread = times[2].as_nanos() as f64 * 2.0;
    let observer = iterjob_postgres::PgPool::connect(&common::pg_url())
        .await
        .expect("observer");
    let (mut dropped, mut committed) = (0u32, 5u32);
    for round in 0..400u32 {
        let done: i64 = effects(store).await.0;
        let after = Duration::from_nanos((rand::random::<f64>() * spread) as u64);
        let item = job.process(&ctx, (vec![done], done + 1));
        tokio::select! {
            biased;
            result = item => {
                result.expect("commit");
                committed += 1;
                spread *= 0.9;
            }
            () = SpinUntil(std::time::Instant::now() + after) => {
                dropped += 1;
                spread *= 1.1;
            }
        }
        // the (only) connection is not left inside a transaction: after a statement
        // of its own it is idle, not "idle in transaction" (for more than a moment: a
        // `BEGIN` that a dropped item started may still be finishing, then rolls back)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(store.pool())
                .await
                .expect("query");
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&observer)
                    .await
                    .expect("state");
            if state.as_deref() == Some("idle") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: a dropped item left its connection inside a transaction \
                 ({state:?})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_consistent(store, id).await;
    }
    assert!(
        dropped >= 40 && committed >= 40,
        "{dropped} dropped, {committed} committed"
    );
    let (total, distinct, repeated) = effects(store).await;
    assert_eq!((total, repeated), (distinct, 0));
    // an item dropped after sending its COMMIT may have committed all the same
    assert!(
        total >= i64::from(committed) && total <= i64::from(committed + dropped),
        "{total} effects, {committed} committed, {dropped} dropped"
    );
}
