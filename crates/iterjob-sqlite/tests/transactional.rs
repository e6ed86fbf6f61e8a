//! Transactional iteration: a job writing one effect row per item into the store's
//! own database commits each effect exactly once, across clean interruptions,
//! dropped (crashed) workers and stale runs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::store::{ClaimRequest, JobId, JobState, NewJob};
use iterjob::{Job, JobContext, JobError, Registry, Store, Worker, WorkerConfig, WorkerReport};
use iterjob_sqlite::sqlx::{self, Sqlite, Transaction};
use iterjob_sqlite::{SqliteStore, Transactional, TransactionalJob};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Writes one row per item into `effects`, in batches.
#[derive(Default)]
struct WriteEffects {
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

impl TransactionalJob for WriteEffects {
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
        tx: &mut Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        let written = batch.clone();
        for item in batch {
            sqlx::query("INSERT INTO effects (item, run) VALUES (?, ?)")
                .bind(item)
                .bind(ctx.run)
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

async fn setup() -> common::TempStore {
    let temp = common::TempStore::new().await;
    sqlx::query("CREATE TABLE effects (item INTEGER NOT NULL, run INTEGER NOT NULL)")
        .execute(temp.store.pool())
        .await
        .expect("create effects");
    temp
}

async fn enqueue(store: &SqliteStore, params: Params) -> JobId {
    let job = Transactional::new(WriteEffects::default(), store.clone());
    store
        .job_insert(&NewJob::of(&job, &params).expect("params"))
        .await
        .expect("enqueue")
}

fn worker(store: &SqliteStore, job: WriteEffects, config: WorkerConfig) -> Worker {
    let job = Transactional::new(job, store.clone());
    Worker::new(Arc::new(store.clone()), Registry::new().with(job), config).expect("worker")
}

fn config(lease: Duration, checkpoint_interval: Duration) -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.concurrency = 1;
    config.poll_interval = Duration::from_millis(10);
    config.lease = lease;
    config.heartbeat_interval = lease / 5;
    config.checkpoint_interval = checkpoint_interval;
    config.rescue_interval = Duration::from_millis(50);
    config.retry_base = Duration::from_millis(10);
    config
}

/// (effects, distinct items, items written more than once)
async fn effects(store: &SqliteStore) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM effects), (SELECT COUNT(DISTINCT item) FROM effects),
                (SELECT COUNT(*) FROM (SELECT item FROM effects GROUP BY item HAVING COUNT(*) > 1))",
    )
    .fetch_one(store.pool())
    .await
    .expect("effects")
}

async fn assert_exactly_once(store: &SqliteStore, id: JobId, n: i64) {
    let (total, distinct, repeated) = effects(store).await;
    assert_eq!(repeated, 0, "no item's effect twice");
    assert_eq!((total, distinct), (n, n), "every item's effect once");
    let (min, max): (i64, i64) = sqlx::query_as("SELECT MIN(item), MAX(item) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("range");
    assert_eq!((min, max), (0, n - 1));
    let job = store.job_get(id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert_eq!(job.items_done, n as u64, "items_done counts each item once");
    assert_eq!(job.cursor, Some(serde_json::json!(n)));
}

/// The stored cursor and count name exactly the committed effects (read in one
/// snapshot: a run being dropped may still be committing).
async fn assert_consistent(store: &SqliteStore, id: JobId) {
    let (total, distinct, repeated, items_done, cursor): (i64, i64, i64, i64, Option<String>) =
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM effects), (SELECT COUNT(DISTINCT item) FROM effects),
                    (SELECT COUNT(*) FROM (SELECT item FROM effects GROUP BY item HAVING COUNT(*) > 1)),
                    items_done, cursor
             FROM iterjob_jobs WHERE id = ?",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("snapshot");
    assert_eq!(repeated, 0, "no item's effect twice");
    assert_eq!(total, distinct);
    assert_eq!(items_done, total, "items_done = committed effects");
    let cursor: i64 = cursor.map_or(0, |c| c.parse().expect("an integer cursor"));
    assert_eq!(cursor, total, "cursor just past the committed effects");
}

async fn wait_for_state(store: &SqliteStore, id: JobId, state: JobState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = store.job_get(id).await.expect("get").expect("job");
        if job.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {state}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for_effects(store: &SqliteStore, at_least: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while effects(store).await.0 < at_least {
        if tokio::time::Instant::now() >= deadline {
            let jobs = store.job_list(&Default::default()).await.expect("jobs");
            panic!("no progress: {:?} {jobs:?}", effects(store).await);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_transaction_checkpoint_is_fenced_and_counts_items() {
    let temp = setup().await;
    let store = &temp.store;
    let id = enqueue(
        store,
        Params {
            n: 10,
            batch: 3,
            delay_ms: 0,
            fail_once_at: None,
        },
    )
    .await;
    let claimed = store
        .job_claim(&ClaimRequest {
            worker_id: "test".into(),
            queues: vec!["default".into()],
            kinds: vec![WriteEffects::KIND.into()],
            limit: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .expect("claim")
        .pop()
        .expect("claimed");
    let job = Transactional::new(WriteEffects::default(), store.clone());
    let ctx = |token| JobContext {
        params: Params {
            n: 10,
            batch: 3,
            delay_ms: 0,
            fail_once_at: None,
        },
        job_id: id,
        attempt: 0,
        run: 1,
        queue: "default".into(),
        run_token: token,
    };
    let params = ctx(claimed.token).params;
    let mut steps = std::pin::pin!(job.enumerate(&params, None).expect("enumerate"));
    let (first, _) = steps.next().await.expect("a batch").expect("ok");
    assert_eq!(
        first,
        (vec![0, 1, 2], 3),
        "each item carries the cursor past it"
    );
    assert_eq!(job.count_items(&first), 3);

    // A wrong token: the effects roll back with the rejected cursor write.
    let stale = iterjob::store::RunToken(claimed.token.0.wrapping_add(1));
    let err = job
        .process(&ctx(stale), first.clone())
        .await
        .expect_err("a stale token is rejected");
    assert!(!err.is_fatal(), "{err}");
    assert!(err.to_string().contains("lease lost"), "{err}");
    assert_eq!(effects(store).await, (0, 0, 0), "nothing committed");
    let record = store.job_get(id).await.expect("get").expect("job");
    assert_eq!((record.cursor, record.items_done), (None, 0));

    // The run's token: effects, cursor and count commit together.
    job.process(&ctx(claimed.token), first)
        .await
        .expect("commit");
    let (second, _) = steps.next().await.expect("a batch").expect("ok");
    job.process(&ctx(claimed.token), second)
        .await
        .expect("commit");
    assert_eq!(effects(store).await, (6, 6, 0));
    let record = store.job_get(id).await.expect("get").expect("job");
    assert_eq!(record.cursor, Some(serde_json::json!(6)));
    assert_eq!(record.items_done, 6, "incremented by each batch's count");
    assert!(record.checkpointed_at.is_some());

    // A job that is not in this store's database fails for good, with its reason.
    let other = common::TempStore::new().await;
    sqlx::query("CREATE TABLE effects (item INTEGER NOT NULL, run INTEGER NOT NULL)")
        .execute(other.store.pool())
        .await
        .expect("create effects");
    let elsewhere = Transactional::new(WriteEffects::default(), other.store.clone());
    let err = elsewhere
        .process(&ctx(claimed.token), (vec![6], 7))
        .await
        .expect_err("no such job there");
    assert!(err.is_fatal(), "{err}");
    assert!(
        err.to_string().contains("must live in the database"),
        "{err}"
    );
    assert_eq!(effects(&other.store).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdowns_again_and_again_commit_each_effect_once() {
    let temp = setup().await;
    let store = &temp.store;
    let n = 400;
    let id = enqueue(
        store,
        Params {
            n,
            batch: 4,
            delay_ms: 1,
            fail_once_at: None,
        },
    )
    .await;
    let mut stops = 0;
    for round in 0.. {
        assert!(round < 500, "the job never completed");
        // the runtime's own checkpoints: rare in some rounds, frequent in others
        let checkpoint = if round % 2 == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(7)
        };
        let worker = Arc::new(worker(
            store,
            WriteEffects::default(),
            config(Duration::from_secs(30), checkpoint),
        ));
        let shutdown = worker.shutdown_token();
        let running = tokio::spawn({
            let worker = Arc::clone(&worker);
            async move { worker.run_until_idle().await }
        });
        tokio::time::sleep(Duration::from_millis(5 + (round * 7) % 40)).await;
        shutdown.cancel();
        let report: WorkerReport = running.await.expect("join").expect("worker");
        assert_eq!(
            report.lease_lost + report.aborted + report.failed,
            0,
            "{report:?}"
        );
        stops += report.interrupted;
        assert_consistent(store, id).await;
        let job = store.job_get(id).await.expect("get").expect("job");
        if job.state == JobState::Completed {
            break;
        }
        assert_eq!(job.state, JobState::Queued, "{job:?}");
    }
    assert!(stops >= 5, "interrupted {stops} times");
    assert_exactly_once(store, id, n).await;
    let job = store.job_get(id).await.expect("get").expect("job");
    assert_eq!(u64::from(job.interruptions), stops);
    assert_eq!(job.attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_workers_are_taken_over_and_commit_each_effect_once() {
    let temp = setup().await;
    let store = &temp.store;
    let n = 600;
    let id = enqueue(
        store,
        Params {
            n,
            batch: 3,
            delay_ms: 2,
            fail_once_at: None,
        },
    )
    .await;
    let lease = Duration::from_millis(600);
    for crash in 0..3 {
        // A worker whose own checkpoints never come: only the items' transactions
        // move the cursor. It is dropped mid-run, as a crash would stop it.
        let w = worker(
            store,
            WriteEffects::default(),
            config(lease, Duration::from_secs(60)),
        );
        let running = tokio::spawn(async move { w.run().await });
        let before = effects(store).await.0;
        wait_for_effects(store, before + 30 + crash * 11).await;
        tokio::time::sleep(Duration::from_millis(3 + crash as u64 * 5)).await;
        running.abort();
        assert!(running.await.expect_err("aborted").is_cancelled());

        let job = store.job_get(id).await.expect("get").expect("job");
        assert_eq!(
            job.state,
            JobState::Running,
            "the dropped worker still holds the lease"
        );
        assert_consistent(store, id).await;
        let (done, _, _) = effects(store).await;
        assert!(done > 0 && done < n, "dropped mid-run: {done}");

        // Nothing moves until the lease expires; then a worker rescues the job.
        // (a heartbeat in flight when the worker was dropped still lands, and on a
        // loaded machine late: the lease runs from that one)
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let mut rescued = store.job_rescue_expired(3).await.expect("rescue");
        for _ in 0..50 {
            if !rescued.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            rescued = store.job_rescue_expired(3).await.expect("rescue");
        }
        assert_eq!(rescued.len(), 1, "{rescued:?}");
        assert_eq!(rescued[0].state, JobState::Queued);
        assert_consistent(store, id).await;
    }

    // The last worker finishes the job; a lease long enough that slow fsyncs on a
    // loaded machine cannot expire it (a heartbeat not confirmed within the lease
    // stops the run, by design).
    let w = worker(
        store,
        WriteEffects::default(),
        config(Duration::from_secs(10), Duration::from_secs(1)),
    );
    let report = w.run_until_idle().await.expect("worker");
    assert_eq!(report.completed, 1, "{report:?}");
    assert_exactly_once(store, id, n).await;
    let job = store.job_get(id).await.expect("get").expect("job");
    // (a slow heartbeat under load may lose a lease once more: more attempts, still
    // every effect once)
    assert!(job.attempts >= 3, "each crash used an attempt: {job:?}");
    assert_eq!(job.crashes, 0, "progress reset the crash count");
    let runs_with_effects: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT run) FROM effects")
        .fetch_one(store.pool())
        .await
        .expect("runs");
    assert!(
        runs_with_effects >= 4,
        "three dropped runs and the last one all did work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_run_cannot_commit_an_effect() {
    let temp = setup().await;
    let store = &temp.store;
    let n = 50;
    let id = enqueue(
        store,
        Params {
            n,
            batch: 5,
            delay_ms: 0,
            fail_once_at: None,
        },
    )
    .await;
    let reached = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let gated = WriteEffects {
        gate: Some(Gate {
            at: 20,
            reached: Arc::clone(&reached),
            release: Arc::clone(&release),
        }),
    };
    // Worker A stops in its enumerator before the batch of item 20 (holding no
    // transaction), with its lease alive and no checkpoint of its own.
    let a = Arc::new(worker(
        store,
        gated,
        config(Duration::from_secs(30), Duration::from_secs(60)),
    ));
    let running = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.run().await }
    });
    reached.notified().await;
    assert_consistent(store, id).await;
    assert_eq!(effects(store).await.0, 20);

    // Its lease is declared expired and the job rescued: the token A holds is void.
    sqlx::query("UPDATE iterjob_jobs SET lease_expires_at = 0 WHERE id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .expect("expire the lease");
    let rescued = store.job_rescue_expired(3).await.expect("rescue");
    assert_eq!(rescued.len(), 1);

    // A goes on: its batch's effects are written in its transaction, the fenced
    // cursor write changes nothing, and the transaction rolls back.
    a.shutdown_token().cancel(); // after this run, A takes no more jobs
    release.notify_one();
    let report = running.await.expect("join").expect("worker A");
    assert_eq!(
        report.lease_lost, 1,
        "A's run ended as lease-lost: {report:?}"
    );
    assert_eq!(report.completed, 0, "{report:?}");
    assert_eq!(
        effects(store).await.0,
        20,
        "nothing of the stale batch committed"
    );
    assert_consistent(store, id).await;
    let job = store.job_get(id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Queued, "{job:?}");

    // Worker B finishes the job: every effect once.
    let b = worker(
        store,
        WriteEffects::default(),
        config(Duration::from_secs(30), Duration::from_secs(1)),
    );
    let report = b.run_until_idle().await.expect("worker B");
    assert_eq!(report.completed, 1, "{report:?}");
    assert_exactly_once(store, id, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_error_rolls_back_the_work_with_the_cursor() {
    let temp = setup().await;
    let store = &temp.store;
    let n = 40;
    let id = enqueue(
        store,
        Params {
            n,
            batch: 4,
            delay_ms: 0,
            fail_once_at: Some(22),
        },
    )
    .await;
    let mut cfg = config(Duration::from_secs(30), Duration::from_secs(60));
    cfg.retry_max = Duration::from_millis(20);
    let w = worker(store, WriteEffects::default(), cfg);
    let shutdown = w.shutdown_token();
    // the first run: items 0..20 committed, the batch 20..24 wrote its effects and failed
    let first = tokio::spawn(async move { w.run_until_idle().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = store.job_get(id).await.expect("get").expect("job");
        if job.attempts == 1 {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("failing at item 22")
    );
    shutdown.cancel();
    first.await.expect("join").expect("worker");
    let job = store.job_get(id).await.expect("get").expect("job");
    if job.state != JobState::Completed {
        assert_consistent(store, id).await;
    }

    // the retry, after its backoff
    let w = Arc::new(worker(
        store,
        WriteEffects::default(),
        config(Duration::from_secs(30), Duration::from_secs(1)),
    ));
    let second = tokio::spawn({
        let w = Arc::clone(&w);
        async move { w.run().await }
    });
    wait_for_state(store, id, JobState::Completed).await;
    w.shutdown_token().cancel();
    second.await.expect("join").expect("worker");
    assert_exactly_once(store, id, n).await;
    let runs: Vec<(i64, i64)> =
        sqlx::query_as("SELECT run, COUNT(*) FROM effects GROUP BY run ORDER BY run")
            .fetch_all(store.pool())
            .await
            .expect("runs");
    assert_eq!(
        runs[0],
        (1, 20),
        "the failed batch's effects were rolled back: {runs:?}"
    );
}

/// A worker that reaches its shutdown deadline aborts its runs and releases them
/// without progress, so the cursor the items' transactions committed stands and the
/// next run repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_deadline_does_not_rewind_the_cursor() {
    let temp = setup().await;
    let store = &temp.store;
    let n = 200;
    let id = enqueue(
        store,
        Params {
            n,
            batch: 1,
            delay_ms: 0,
            fail_once_at: None,
        },
    )
    .await;
    let reached = Arc::new(Notify::new());
    let gated = WriteEffects {
        gate: Some(Gate {
            at: 50,
            reached: Arc::clone(&reached),
            release: Arc::new(Notify::new()), // never released: the run hangs
        }),
    };
    let mut cfg = config(Duration::from_secs(30), Duration::from_secs(60));
    cfg.shutdown_timeout = Duration::from_millis(100);
    let a = Arc::new(worker(store, gated, cfg));
    let running = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.run().await }
    });
    reached.notified().await;
    a.shutdown_token().cancel();
    let report = running.await.expect("join").expect("worker");
    assert_eq!(report.aborted, 1, "{report:?}");
    assert_consistent(store, id).await;

    let b = worker(
        store,
        WriteEffects::default(),
        config(Duration::from_secs(30), Duration::from_secs(1)),
    );
    b.run_until_idle().await.expect("worker B");
    assert_exactly_once(store, id, n).await;
}
