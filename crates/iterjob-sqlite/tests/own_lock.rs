//! A healthy SQLite worker whose own items hold the write lock must not lose its job:
//! each item's transaction of a `Transactional` job renews the run's lease, so a
//! heartbeat that waits behind those transactions costs nothing.

use std::sync::Arc;
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{JobState, NewJob, Store};
use iterjob::{JobContext, JobError, Registry, Worker, WorkerConfig};
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

/// The setting: items holding the write lock 600 ms each, a 3 s lease, a
/// heartbeat every 500 ms. Before the lease was renewed in the item's transaction,
/// the heartbeats queued behind the items, the worker's own rescuer took the job as
/// dead and each rescue cost an attempt (failed 3/3 after 15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_that_hold_the_write_lock_keep_their_own_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&dir.path().join("lock.db").display().to_string())
        .await
        .unwrap();
    iterjob_sqlite::sqlx::query("CREATE TABLE effects (item INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let id = store
        .job_insert(&NewJob::new("holds_the_lock", serde_json::Value::Null).max_attempts(3))
        .await
        .unwrap();
    let mut config = WorkerConfig::default();
    config.concurrency = 1;
    config.lease = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(500);
    config.rescue_interval = Duration::from_millis(200);
    config.poll_interval = Duration::from_millis(50);
    let registry = Registry::new().with(Transactional::new(HoldsTheLock, store.clone()));
    let worker = Worker::new(Arc::new(store.clone()), registry, config).unwrap();
    let token = worker.shutdown_token();
    let handle = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
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
    assert_eq!(
        (record.state, record.attempts, record.crashes),
        (JobState::Completed, 0, 0),
        "{:?}",
        record.last_error
    );
    let effects: i64 = iterjob_sqlite::sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(effects, 10, "each item's effect exactly once");
}
