//! A healthy SQLite worker whose own items hold the write lock must not lose its job:
//! each item's transaction of a `Transactional` job renews the run's lease, so a
//! heartbeat that waits behind those transactions costs nothing; a plain job whose
//! items take the lock in transactions of their own gets its lease renewed between
//! two items, where its transactions are not in the way. And when the lease truly
//! cannot be renewed (another process holds the lock past it), the run stops and
//! hands the job back: an interruption, never an attempt. Likewise a kind whose own
//! pool has fewer connections than the worker runs jobs at once.

use std::sync::Arc;
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{JobId, JobRecord, JobState, NewJob, Store};
use iterjob::{Job, JobContext, JobError, Registry, Worker, WorkerConfig};
use iterjob_sqlite::sqlx::{Sqlite, Transaction};
use iterjob_sqlite::{SqliteStore, Transactional, TransactionalJob};

/// Each item writes a row, then keeps its transaction (and SQLite's write lock) open
/// for 600 ms, as a slow item's work would.
struct HoldsTheLock;

impl TransactionalJob<Sqlite> for HoldsTheLock {
    const KIND: &'static str = "holds_the_lock";
    type Params = ();
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..10, cursor))
    }

    async fn process(
        &self,
        _: &JobContext<()>,
        item: i64,
        tx: &mut Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        iterjob_sqlite::sqlx::query("INSERT INTO effects (item) VALUES (?)")
            .bind(item)
            .execute(&mut **tx)
            .await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok(())
    }
}

/// The same items as a plain job: each opens its own transaction on the store's
/// pool, writes, holds the lock 600 ms and commits.
struct HoldsTheLockPlain {
    pool: iterjob_sqlite::sqlx::SqlitePool,
}

impl Job for HoldsTheLockPlain {
    const KIND: &'static str = "holds_the_lock_plain";
    type Params = ();
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..10, cursor))
    }

    async fn process(&self, _: &JobContext<()>, item: i64) -> Result<(), JobError> {
        let mut tx = self.pool.begin().await?;
        iterjob_sqlite::sqlx::query("INSERT INTO effects (item) VALUES (?)")
            .bind(item)
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        tx.commit().await?;
        Ok(())
    }
}

/// A store with an `effects` table and one job of `kind` (3 attempts).
async fn setup(dir: &tempfile::TempDir, kind: &str) -> (SqliteStore, JobId) {
    let store = SqliteStore::connect(&dir.path().join("lock.db").display().to_string())
        .await
        .unwrap();
    iterjob_sqlite::sqlx::query("CREATE TABLE effects (item INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let id = store
        .job_insert(&NewJob::new(kind, serde_json::Value::Null).max_attempts(3))
        .await
        .unwrap();
    (store, id)
}

/// The setting: a 3 s lease, a heartbeat every 500 ms, a rescuer every 200 ms.
fn config() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.concurrency = 1;
    config.lease = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(500);
    config.rescue_interval = Duration::from_millis(200);
    config.poll_interval = Duration::from_millis(50);
    config
}

/// Runs `registry` until job `id` is completed or failed (at most `limit`).
async fn run_until_done(
    store: &SqliteStore,
    registry: Registry,
    id: JobId,
    limit: Duration,
) -> JobRecord {
    let worker = Worker::new(Arc::new(store.clone()), registry, config()).unwrap();
    let token = worker.shutdown_token();
    let handle = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + limit;
    let record = loop {
        let record = store.job_get(id).await.unwrap().unwrap();
        if matches!(record.state, JobState::Completed | JobState::Failed) {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    token.cancel();
    handle.await.unwrap().unwrap();
    record
}

async fn effects(store: &SqliteStore) -> (i64, i64) {
    iterjob_sqlite::sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT item) FROM effects")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// The setting: items holding the write lock 600 ms each, a 3 s lease, a
/// heartbeat every 500 ms. Before the lease was renewed in the item's transaction,
/// the heartbeats queued behind the items, the worker's own rescuer took the job as
/// dead and each rescue cost an attempt (failed 3/3 after 15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_that_hold_the_write_lock_keep_their_own_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = setup(&dir, "holds_the_lock").await;
    let registry = Registry::new().with(Transactional::new(HoldsTheLock, store.clone()));
    let record = run_until_done(&store, registry, id, Duration::from_secs(40)).await;
    assert_eq!(
        (record.state, record.attempts, record.crashes),
        (JobState::Completed, 0, 0),
        "{:?}",
        record.last_error
    );
    assert_eq!(
        effects(&store).await,
        (10, 10),
        "each item's effect exactly once"
    );
}

/// A plain job whose items hold the lock in their own transactions: the heartbeat
/// waits behind them, and the run renews its lease between two items instead.
/// Before, the lease ran out and the run stopped without releasing; the rescue cost
/// an attempt each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_job_holding_the_write_lock_renews_its_lease_between_items() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = setup(&dir, "holds_the_lock_plain").await;
    let job = HoldsTheLockPlain {
        pool: store.pool().clone(),
    };
    let registry = Registry::new().with(job);
    let record = run_until_done(&store, registry, id, Duration::from_secs(40)).await;
    // one run, never handed back: the lease was kept all along
    assert_eq!(
        (
            record.state,
            record.attempts,
            record.crashes,
            record.interruptions
        ),
        (JobState::Completed, 0, 0, 0),
        "{:?}",
        record.last_error
    );
    // at-least-once: an item may repeat after an interruption, none is missing
    let (_, distinct) = effects(&store).await;
    assert_eq!(distinct, 10, "every item's effect");
}

/// Another process holds the write lock for twice the lease: the run cannot renew
/// its lease, stops at the next item and hands the job back once the lock is free.
/// No attempt and no crash is counted, and the job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_hands_the_job_back_without_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = setup(&dir, "holds_the_lock").await;
    let path = dir.path().join("lock.db");
    let holder = std::thread::spawn(move || {
        // a separate connection, as another process would hold it: wait until the
        // job has started, then take the write lock for 6 s (the lease is 3 s)
        std::thread::sleep(Duration::from_millis(1500));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use iterjob_sqlite::sqlx::ConnectOptions;
            use iterjob_sqlite::sqlx::sqlite::SqliteConnectOptions;
            // no busy wait: SQLite's busy handler would lose every race against the
            // items' back-to-back transactions; poll for the gap between two instead
            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::ZERO)
                .connect()
                .await
                .unwrap();
            let mut tries = 0;
            while iterjob_sqlite::sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .is_err()
            {
                tries += 1;
                assert!(tries < 10_000, "never got the write lock");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_secs(6));
            iterjob_sqlite::sqlx::query("COMMIT")
                .execute(&mut conn)
                .await
                .unwrap();
        });
    });
    let registry = Registry::new().with(Transactional::new(HoldsTheLock, store.clone()));
    let record = run_until_done(&store, registry, id, Duration::from_secs(60)).await;
    holder.join().unwrap();
    assert_eq!(
        (record.state, record.attempts, record.crashes),
        (JobState::Completed, 0, 0),
        "{:?}",
        record.last_error
    );
    assert_eq!(
        effects(&store).await,
        (10, 10),
        "each item's effect exactly once"
    );
    assert!(
        record.interruptions >= 1 && record.runs >= 2,
        "the run was handed back and taken up again: {record:?}"
    );
}

/// Each item holds the kind's only pooled connection for 400 ms.
struct HoldsTheConnection;

impl TransactionalJob<Sqlite> for HoldsTheConnection {
    const KIND: &'static str = "holds_the_connection";
    type Params = ();
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..4, cursor))
    }

    async fn process(
        &self,
        ctx: &JobContext<()>,
        item: i64,
        tx: &mut Transaction<'_, Sqlite>,
    ) -> Result<(), JobError> {
        iterjob_sqlite::sqlx::query("INSERT INTO effects (item) VALUES (?)")
            .bind(ctx.job_id * 100 + item)
            .execute(&mut **tx)
            .await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(())
    }
}

/// A kind whose own pool is smaller than the worker's concurrency (one connection,
/// three jobs at once, each item's transaction holding it 400 ms, a 300 ms acquire
/// timeout): the runs that find no free connection are not the jobs' fault. They
/// are interrupted (no attempt), the job's last error says what to change, and
/// every job completes. Before, each pool timeout was a retryable error: the
/// attempts ran out and the jobs failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_smaller_than_the_worker_costs_no_attempt_and_says_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = setup(&dir, "holds_the_connection").await;
    let mut ids = vec![first];
    for _ in 0..2 {
        let job = NewJob::new("holds_the_connection", serde_json::Value::Null).max_attempts(2);
        ids.push(store.job_insert(&job).await.unwrap());
    }
    let small = iterjob_sqlite::sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect_with(
            SqliteStore::options(&dir.path().join("lock.db").display().to_string()).unwrap(),
        )
        .await
        .unwrap();
    let kind_store = SqliteStore::from_pool(small);
    let registry = Registry::new().with(Transactional::new(HoldsTheConnection, kind_store));
    let mut config = config();
    config.concurrency = 3;
    config.lease = Duration::from_secs(30);
    let worker = Worker::new(Arc::new(store.clone()), registry, config).unwrap();
    let token = worker.shutdown_token();
    let handle = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let records = loop {
        let mut records = Vec::new();
        for id in &ids {
            records.push(store.job_get(*id).await.unwrap().unwrap());
        }
        if records
            .iter()
            .all(|r| matches!(r.state, JobState::Completed | JobState::Failed))
        {
            break records;
        }
        assert!(tokio::time::Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    token.cancel();
    handle.await.unwrap().unwrap();
    for r in &records {
        assert_eq!(
            (r.state, r.attempts),
            (JobState::Completed, 0),
            "job {}: {:?}",
            r.id,
            r.last_error
        );
    }
    let starved: Vec<&JobRecord> = records.iter().filter(|r| r.interruptions > 0).collect();
    assert!(
        !starved.is_empty(),
        "some run found no free connection: {records:?}"
    );
    for r in starved {
        let error = r.last_error.as_deref().unwrap_or_default();
        assert!(
            error.contains("no attempt used") && error.contains("give the pool more connections"),
            "job {}: {error}",
            r.id
        );
    }
    assert_eq!(
        effects(&store).await,
        (12, 12),
        "each item's effect exactly once"
    );
}
