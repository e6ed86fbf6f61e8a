//! The transactional suite: a job writing one effect row per item into the store's
//! own database commits each effect exactly once, across clean interruptions,
//! dropped (crashed) workers, stale runs, errors and shutdown deadlines; the adapter
//! forwards every [`Job`] method to the inner job (one scenario per method, each
//! failing if that forward is dropped); and a partitioned transactional job, split
//! dynamically, walks every item once.
//!
//! Run it with [`transactional_suite!`](crate::transactional_suite).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::partition::{int_ranges, split_int_range};
use iterjob::store::{ClaimRequest, InterruptReason, JobId, JobState, NewJob, RunToken};
use iterjob::{
    Job, JobContext, JobError, KindSettings, Registry, SplitParams, Store, Worker, WorkerConfig,
    WorkerReport,
};
use iterjob_sql::dialect::{Dialect, Query};
use iterjob_sql::{KeyValue, Transactional, TransactionalJob};
use serde::{Deserialize, Serialize};
use sqlx::Transaction;
use tokio::sync::Notify;

use super::{ColumnType, DbOf, SqlHarness, create_table, fetch, int, q, with_db};

/// Runs the transactional suite against a harness: one `#[test]` per scenario.
///
/// ```ignore
/// iterjob_testkit::transactional_suite!(common::Db);
/// ```
#[macro_export]
macro_rules! transactional_suite {
    ($harness:ty $(,)?) => {
        $crate::__transactional_tests! {
            ($harness)
            the_in_transaction_checkpoint_is_fenced_and_counts_items,
            shutdowns_again_and_again_commit_each_effect_once,
            dropped_workers_are_taken_over_and_commit_each_effect_once,
            a_stale_run_cannot_commit_an_effect,
            an_error_rolls_back_the_work_with_the_cursor,
            a_shutdown_deadline_does_not_rewind_the_cursor,
            a_partitioned_job_split_on_the_fly_commits_each_effect_once,
            forwards_count_items,
            forwards_total,
            forwards_throttle,
            forwards_on_start,
            forwards_on_resume,
            forwards_on_interrupt,
            forwards_on_complete,
            forwards_on_error,
            forwards_partition,
            forwards_split,
            forwards_settings,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __transactional_tests {
    (($harness:ty) $($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                $crate::sql::transactional::$scenario::<$harness>();
            }
        )*
    };
}

/// Time limit of a scenario.
const LIMIT: Duration = Duration::from_secs(180);

/// Writes one row per item into `effects`, in batches.
pub struct WriteEffects<H> {
    /// Stops the enumerator before yielding this item until `release` is notified
    /// (announcing it on `reached`): outside any transaction.
    gate: Option<Gate>,
    _harness: PhantomData<fn() -> H>,
}

impl<H> Default for WriteEffects<H> {
    fn default() -> Self {
        WriteEffects {
            gate: None,
            _harness: PhantomData,
        }
    }
}

struct Gate {
    at: i64,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

/// The parameters of [`WriteEffects`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Items `from..n`.
    pub n: i64,
    /// Where this partition starts (0 for the whole job).
    #[serde(default)]
    pub from: i64,
    /// Items per batch (per transaction).
    pub batch: usize,
    /// Work time per batch, inside the transaction.
    pub delay_ms: u64,
    /// Fail the batch holding this item, after writing its effects, on the first
    /// attempt.
    #[serde(default)]
    pub fail_once_at: Option<i64>,
}

impl Params {
    fn new(n: i64, batch: usize) -> Self {
        Params {
            n,
            from: 0,
            batch,
            delay_ms: 0,
            fail_once_at: None,
        }
    }
}

impl<H: SqlHarness> TransactionalJob<DbOf<H>> for WriteEffects<H> {
    const KIND: &'static str = "write_effects";
    const PARTITIONABLE: bool = true;
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
        let items = enumerator::range(params.from..params.n, cursor).then(move |step| {
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

    async fn total(&self, params: &Params) -> Result<Option<u64>, JobError> {
        Ok(u64::try_from(params.n - params.from).ok())
    }

    async fn process(
        &self,
        ctx: &JobContext<Params>,
        batch: Vec<i64>,
        tx: &mut Transaction<'_, DbOf<H>>,
    ) -> Result<(), JobError> {
        let written = batch.clone();
        for item in batch {
            let values = [
                KeyValue::Integer(item),
                KeyValue::Integer(i64::from(ctx.run)),
            ];
            let sql = format!(
                "INSERT INTO effects (item, run) VALUES ({})",
                super::params::<H>(1, &values)
            );
            let mut query: Query<'_, H::Dialect> = sqlx::query::<DbOf<H>>(&sql);
            for value in &values {
                query = <H::Dialect as Dialect>::bind_key(query, value);
            }
            <H::Dialect as Dialect>::fetch(&mut **tx, query)
                .try_collect::<Vec<_>>()
                .await
                .map_err(JobError::retryable)?;
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

    async fn partition(&self, params: &Params, n: u32) -> Result<Vec<Params>, JobError> {
        Ok(int_ranges(params.from..params.n, n)
            .into_iter()
            .map(|range| Params {
                from: range.start,
                n: range.end,
                ..params.clone()
            })
            .collect())
    }

    async fn split(
        &self,
        params: &Params,
        cursor: Option<&i64>,
    ) -> Result<SplitParams<Params>, JobError> {
        Ok(
            split_int_range(&(params.from..params.n), cursor.copied()).map(|(keep, give)| {
                (
                    Params {
                        from: keep.start,
                        n: keep.end,
                        ..params.clone()
                    },
                    Params {
                        from: give.start,
                        n: give.end,
                        ..params.clone()
                    },
                )
            }),
        )
    }
}

type Adapter<H> = Transactional<WriteEffects<H>, <H as SqlHarness>::Store>;

/// Opens a harness with an `effects (item, run)` table.
async fn setup<H: SqlHarness>(db: &H) {
    create_table(
        db,
        "effects",
        &[
            ("item", ColumnType::Int, true),
            ("run", ColumnType::Int, true),
        ],
        &[],
        &[],
    )
    .await;
}

async fn enqueue<H: SqlHarness>(db: &H, params: Params) -> JobId {
    let job: Adapter<H> = Transactional::new(WriteEffects::default(), db.store().clone());
    db.store()
        .job_insert(&NewJob::of(&job, &params).expect("params"))
        .await
        .expect("enqueue")
}

fn worker<H: SqlHarness>(db: &H, job: WriteEffects<H>, config: WorkerConfig) -> Worker {
    let job: Adapter<H> = Transactional::new(job, db.store().clone());
    Worker::new(
        Arc::new(db.store().clone()),
        Registry::new().with(job),
        config,
    )
    .expect("worker")
}

fn config(lease: Duration, checkpoint_interval: Duration) -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.concurrency = 1;
    config.poll_interval = Duration::from_millis(10);
    config.lease = lease;
    config.heartbeat_interval = lease / 5;
    config.checkpoint_interval = checkpoint_interval;
    config.rescue_interval = Duration::from_millis(50);
    config.backpressure.store_latency = None;
    config.retry_base = Duration::from_millis(10);
    config
}

/// (effects, distinct items, items written more than once)
async fn effects<H: SqlHarness>(db: &H) -> (i64, i64, i64) {
    let rows = fetch(
        db,
        "SELECT (SELECT COUNT(*) FROM effects) AS n, \
                (SELECT COUNT(DISTINCT item) FROM effects) AS d, \
                (SELECT COUNT(*) FROM (SELECT item FROM effects GROUP BY item \
                 HAVING COUNT(*) > 1) AS twice) AS r",
        &[],
    )
    .await;
    let row = &rows[0];
    (int::<H>(row, "n"), int::<H>(row, "d"), int::<H>(row, "r"))
}

async fn job<H: SqlHarness>(db: &H, id: JobId) -> iterjob::JobRecord {
    db.store().job_get(id).await.expect("get").expect("job")
}

async fn assert_exactly_once<H: SqlHarness>(db: &H, id: JobId, n: i64) {
    let (total, distinct, repeated) = effects(db).await;
    assert_eq!(repeated, 0, "no item's effect twice");
    assert_eq!((total, distinct), (n, n), "every item's effect once");
    let rows = fetch(
        db,
        "SELECT MIN(item) AS lo, MAX(item) AS hi FROM effects",
        &[],
    )
    .await;
    assert_eq!(
        (int::<H>(&rows[0], "lo"), int::<H>(&rows[0], "hi")),
        (0, n - 1)
    );
    let job = job(db, id).await;
    assert_eq!(job.state, JobState::Completed, "{job:?}");
    assert_eq!(job.items_done, n as u64, "items_done counts each item once");
}

/// The stored cursor and count name exactly the committed effects (read in one
/// statement: a run being dropped may still be committing).
async fn assert_consistent<H: SqlHarness>(db: &H, id: JobId) {
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM effects) AS n, \
                (SELECT COUNT(DISTINCT item) FROM effects) AS d, \
                (SELECT COUNT(*) FROM (SELECT item FROM effects GROUP BY item \
                 HAVING COUNT(*) > 1) AS twice) AS r, \
                j.items_done AS items_done, \
                CAST(j.{cursor} AS {text}) AS cursor_text \
         FROM {jobs} j WHERE j.id = {param}",
        cursor = q::<H>("cursor"),
        text = cast_text::<H>(),
        jobs = db.jobs_table(),
        param = super::params::<H>(1, &[KeyValue::Integer(id)]),
    );
    let rows = fetch(db, &sql, &[KeyValue::Integer(id)]).await;
    let row = &rows[0];
    let (total, distinct, repeated) = (int::<H>(row, "n"), int::<H>(row, "d"), int::<H>(row, "r"));
    assert_eq!(repeated, 0, "no item's effect twice");
    assert_eq!(total, distinct);
    assert_eq!(
        int::<H>(row, "items_done"),
        total,
        "items_done = committed effects"
    );
    let cursor = <H::Dialect as Dialect>::row_text(row, "cursor_text")
        .expect("cursor")
        .map_or(0, |c| c.trim().parse::<i64>().expect("an integer cursor"));
    assert_eq!(cursor, total, "cursor just past the committed effects");
}

/// The type a JSON column casts to as text.
fn cast_text<H: SqlHarness>() -> &'static str {
    match <H::Dialect as Dialect>::NAME {
        "MySQL" => "CHAR",
        _ => "TEXT",
    }
}

async fn wait_for_state<H: SqlHarness>(db: &H, id: JobId, state: JobState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = job(db, id).await;
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

async fn wait_for_effects<H: SqlHarness>(db: &H, at_least: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while effects(db).await.0 < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {:?}",
            effects(db).await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn claim_request() -> ClaimRequest {
    ClaimRequest {
        worker_id: "test".into(),
        queues: vec!["default".into()],
        kinds: vec!["write_effects".into()],
        limit: 1,
        lease: Duration::from_secs(300),
    }
}

/// The in-transaction checkpoint is fenced by the run token, writes the cursor past
/// the item and adds the item's count; a job that is not in the store's database
/// fails for good, with its reason.
pub fn the_in_transaction_checkpoint_is_fenced_and_counts_items<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let id = enqueue(db, Params::new(10, 3)).await;
        let claimed = db
            .store()
            .job_claim(&claim_request())
            .await
            .expect("claim")
            .pop()
            .expect("claimed");
        let job: Adapter<H> = Transactional::new(WriteEffects::default(), db.store().clone());
        let ctx = |token| JobContext {
            params: Params::new(10, 3),
            job_id: id,
            attempt: 0,
            run: 1,
            queue: "default".into(),
            run_token: token,
            lease: std::time::Duration::from_secs(30),
            lease_renewal: iterjob::LeaseRenewal::default(),
        };
        let params = Params::new(10, 3);
        let mut steps = std::pin::pin!(job.enumerate(&params, None).expect("enumerate"));
        let (first, _) = steps.next().await.expect("a batch").expect("ok");
        assert_eq!(
            first,
            (vec![0, 1, 2], 3),
            "each item carries the cursor past it"
        );
        assert_eq!(job.count_items(&first), 3);

        // A wrong token: the effects roll back with the rejected cursor write.
        let stale = RunToken(claimed.token.0.wrapping_add(1));
        let err = job
            .process(&ctx(stale), first.clone())
            .await
            .expect_err("a stale token is rejected");
        assert!(!err.is_fatal(), "{err}");
        assert!(err.to_string().contains("lease lost"), "{err}");
        assert_eq!(effects(db).await, (0, 0, 0), "nothing committed");
        let record = self::job(db, id).await;
        assert_eq!((record.cursor, record.items_done), (None, 0));

        // The run's token: effects, cursor and count commit together.
        job.process(&ctx(claimed.token), first)
            .await
            .expect("commit");
        let (second, _) = steps.next().await.expect("a batch").expect("ok");
        job.process(&ctx(claimed.token), second)
            .await
            .expect("commit");
        assert_eq!(effects(db).await, (6, 6, 0));
        let record = self::job(db, id).await;
        assert_eq!(record.cursor, Some(serde_json::json!(6)));
        assert_eq!(record.items_done, 6, "incremented by each batch's count");
        assert!(record.checkpointed_at.is_some());

        // A job that is not in this store's database fails for good, with its reason.
        let Some(other) = H::open().await else {
            return;
        };
        setup(&other).await;
        let elsewhere: Adapter<H> =
            Transactional::new(WriteEffects::default(), other.store().clone());
        let err = elsewhere
            .process(&ctx(claimed.token), (vec![6], 7))
            .await
            .expect_err("no such job there");
        assert!(err.is_fatal(), "{err}");
        assert!(
            err.to_string().contains("must live in the database"),
            "{err}"
        );
        assert_eq!(effects(&other).await, (0, 0, 0));
    });
}

/// Shut down again and again, with rare or frequent runtime checkpoints: every
/// effect once, no attempt used.
pub fn shutdowns_again_and_again_commit_each_effect_once<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let n = 400;
        let id = enqueue(
            db,
            Params {
                delay_ms: 1,
                ..Params::new(n, 4)
            },
        )
        .await;
        let mut stops = 0;
        for round in 0.. {
            assert!(round < 500, "the job never completed");
            let checkpoint = if round % 2 == 0 {
                Duration::from_secs(60)
            } else {
                Duration::from_millis(7)
            };
            let worker = Arc::new(worker(
                db,
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
            assert_consistent(db, id).await;
            let job = job(db, id).await;
            if job.state == JobState::Completed {
                break;
            }
            assert_eq!(job.state, JobState::Queued, "{job:?}");
        }
        assert!(stops >= 5, "interrupted {stops} times");
        assert_exactly_once(db, id, n).await;
        let job = job(db, id).await;
        assert_eq!(u64::from(job.interruptions), stops);
        assert_eq!(job.attempts, 0);
    });
}

/// Workers dropped mid-run (as a crash stops them): only the items' transactions
/// moved the cursor; after the lease a rescue queues the job, and every effect
/// commits once.
pub fn dropped_workers_are_taken_over_and_commit_each_effect_once<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let n = 600;
        let id = enqueue(
            db,
            Params {
                delay_ms: 2,
                ..Params::new(n, 3)
            },
        )
        .await;
        let lease = Duration::from_millis(600);
        for crash in 0..3 {
            let w = worker(
                db,
                WriteEffects::default(),
                config(lease, Duration::from_secs(60)),
            );
            let running = tokio::spawn(async move { w.run().await });
            let before = effects(db).await.0;
            wait_for_effects(db, before + 30 + crash * 11).await;
            tokio::time::sleep(Duration::from_millis(3 + crash as u64 * 5)).await;
            running.abort();
            assert!(running.await.expect_err("aborted").is_cancelled());

            let job = job(db, id).await;
            assert_eq!(
                job.state,
                JobState::Running,
                "the dropped worker still holds the lease"
            );
            assert_consistent(db, id).await;
            let (done, _, _) = effects(db).await;
            assert!(done > 0 && done < n, "dropped mid-run: {done}");

            tokio::time::sleep(lease + Duration::from_millis(100)).await;
            let mut rescued = db.store().job_rescue_expired(3).await.expect("rescue");
            for _ in 0..50 {
                if !rescued.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                rescued = db.store().job_rescue_expired(3).await.expect("rescue");
            }
            assert_eq!(rescued.len(), 1, "{rescued:?}");
            assert_eq!(rescued[0].state, JobState::Queued);
            assert_consistent(db, id).await;
        }
        let w = worker(
            db,
            WriteEffects::default(),
            config(Duration::from_secs(10), Duration::from_secs(1)),
        );
        let report = w.run_until_idle().await.expect("worker");
        assert_eq!(report.completed, 1, "{report:?}");
        assert_exactly_once(db, id, n).await;
        let job = job(db, id).await;
        assert!(job.attempts >= 3, "each crash used an attempt: {job:?}");
        assert_eq!(job.crashes, 0, "progress reset the crash count");
        let rows = fetch(db, "SELECT COUNT(DISTINCT run) AS runs FROM effects", &[]).await;
        assert!(
            int::<H>(&rows[0], "runs") >= 4,
            "three dropped runs and the last one all did work"
        );
    });
}

/// A run whose lease was taken away cannot commit anything.
pub fn a_stale_run_cannot_commit_an_effect<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let n = 50;
        let id = enqueue(db, Params::new(n, 5)).await;
        let reached = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let gated = WriteEffects {
            gate: Some(Gate {
                at: 20,
                reached: Arc::clone(&reached),
                release: Arc::clone(&release),
            }),
            _harness: PhantomData,
        };
        // A rescues nothing itself: its own rescue sweep (every 50 ms) could take the
        // job between the test's UPDATE and its rescue below, which would then find none
        let mut a_config = config(Duration::from_secs(30), Duration::from_secs(60));
        a_config.rescue_interval = Duration::from_secs(3600);
        let a = Arc::new(worker(db, gated, a_config));
        let running = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.run().await }
        });
        reached.notified().await;
        assert_consistent(db, id).await;
        assert_eq!(effects(db).await.0, 20);

        // its lease is declared expired and the job rescued: A's token is void
        let sql = format!(
            "UPDATE {} SET lease_expires_at = 0 WHERE id = {}",
            db.jobs_table(),
            super::params::<H>(1, &[KeyValue::Integer(id)])
        );
        fetch(db, &sql, &[KeyValue::Integer(id)]).await;
        let rescued = db.store().job_rescue_expired(3).await.expect("rescue");
        assert_eq!(rescued.len(), 1);

        a.shutdown_token().cancel();
        release.notify_one();
        let report = running.await.expect("join").expect("worker A");
        assert_eq!(
            report.lease_lost, 1,
            "A's run ended as lease-lost: {report:?}"
        );
        assert_eq!(report.completed, 0, "{report:?}");
        assert_eq!(
            effects(db).await.0,
            20,
            "nothing of the stale batch committed"
        );
        assert_consistent(db, id).await;
        assert_eq!(job(db, id).await.state, JobState::Queued);

        let b = worker(
            db,
            WriteEffects::default(),
            config(Duration::from_secs(30), Duration::from_secs(1)),
        );
        let report = b.run_until_idle().await.expect("worker B");
        assert_eq!(report.completed, 1, "{report:?}");
        assert_exactly_once(db, id, n).await;
    });
}

/// An error rolls the batch's effects back with its cursor; the retry commits them.
pub fn an_error_rolls_back_the_work_with_the_cursor<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let n = 40;
        let id = enqueue(
            db,
            Params {
                fail_once_at: Some(22),
                ..Params::new(n, 4)
            },
        )
        .await;
        let mut cfg = config(Duration::from_secs(30), Duration::from_secs(60));
        cfg.retry_max = Duration::from_millis(20);
        let w = worker(db, WriteEffects::default(), cfg);
        let shutdown = w.shutdown_token();
        let first = tokio::spawn(async move { w.run_until_idle().await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let record = loop {
            let record = job(db, id).await;
            if record.attempts == 1 {
                break record;
            }
            assert!(tokio::time::Instant::now() < deadline, "{record:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(
            record
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("failing at item 22")
        );
        shutdown.cancel();
        first.await.expect("join").expect("worker");
        if job(db, id).await.state != JobState::Completed {
            assert_consistent(db, id).await;
        }
        let w = Arc::new(worker(
            db,
            WriteEffects::default(),
            config(Duration::from_secs(30), Duration::from_secs(1)),
        ));
        let second = tokio::spawn({
            let w = Arc::clone(&w);
            async move { w.run().await }
        });
        wait_for_state(db, id, JobState::Completed).await;
        w.shutdown_token().cancel();
        second.await.expect("join").expect("worker");
        assert_exactly_once(db, id, n).await;
        let rows = fetch(
            db,
            "SELECT run, COUNT(*) AS n FROM effects GROUP BY run ORDER BY run",
            &[],
        )
        .await;
        let first_run = (int::<H>(&rows[0], "run"), int::<H>(&rows[0], "n"));
        assert_eq!(
            first_run,
            (1, 20),
            "the failed batch's effects were rolled back"
        );
    });
}

/// A worker that reaches its shutdown deadline aborts its runs and releases them
/// without progress, so the cursor the items' transactions committed stands.
pub fn a_shutdown_deadline_does_not_rewind_the_cursor<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        let n = 200;
        let id = enqueue(db, Params::new(n, 1)).await;
        let reached = Arc::new(Notify::new());
        let gated = WriteEffects {
            gate: Some(Gate {
                at: 50,
                reached: Arc::clone(&reached),
                release: Arc::new(Notify::new()), // never released: the run hangs
            }),
            _harness: PhantomData,
        };
        let mut cfg = config(Duration::from_secs(30), Duration::from_secs(60));
        cfg.shutdown_timeout = Duration::from_millis(100);
        let a = Arc::new(worker(db, gated, cfg));
        let running = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.run().await }
        });
        reached.notified().await;
        a.shutdown_token().cancel();
        let report = running.await.expect("join").expect("worker");
        assert_eq!(report.aborted, 1, "{report:?}");
        assert_consistent(db, id).await;
        let b = worker(
            db,
            WriteEffects::default(),
            config(Duration::from_secs(30), Duration::from_secs(1)),
        );
        b.run_until_idle().await.expect("worker B");
        assert_exactly_once(db, id, n).await;
    });
}

/// A transactional job enqueued with partitions is partitioned through the adapter
/// (which forwards `partition` and `split`), split again by idle workers, and
/// interrupted again and again: every item's effect commits exactly once.
pub fn a_partitioned_job_split_on_the_fly_commits_each_effect_once<H: SqlHarness>() {
    with_db::<H>(LIMIT, async |db| {
        setup(db).await;
        // long enough that idle workers find a partition worth splitting even on a
        // store that walks it fast (MySQL finished 3,000 before any split 1 run in 4)
        let n = 9000;
        let job: Adapter<H> = Transactional::new(WriteEffects::default(), db.store().clone());
        let id = db
            .store()
            .job_insert(
                &NewJob::of(
                    &job,
                    &Params {
                        delay_ms: 1,
                        ..Params::new(n, 5)
                    },
                )
                .expect("params")
                .partitions(2),
            )
            .await
            .expect("enqueue");
        let mut cfg = config(Duration::from_secs(30), Duration::from_millis(50));
        cfg.concurrency = 4;
        cfg.split_min_remaining = 20;
        let mut reports = Vec::new();
        for round in 0..200 {
            let w = Arc::new(worker(db, WriteEffects::default(), cfg.clone()));
            let shutdown = w.shutdown_token();
            let running = tokio::spawn({
                let w = Arc::clone(&w);
                async move { w.run_until_idle().await }
            });
            tokio::time::sleep(Duration::from_millis(150 + (round * 37) % 200)).await;
            shutdown.cancel();
            let report = running.await.expect("join").expect("worker");
            assert_eq!(report.failed + report.lease_lost, 0, "{report:?}");
            reports.push(format!(
                "r{round}: runs {} split_requests {} interrupted {} completed {} partitioned {}",
                report.runs,
                report.split_requests,
                report.interrupted,
                report.completed,
                report.partitioned
            ));
            if self::job(db, id).await.state == JobState::Completed {
                break;
            }
        }
        let parent = self::job(db, id).await;
        assert_eq!(parent.state, JobState::Completed, "{parent:?}");
        let partitions = db.store().job_partitions(id).await.expect("partitions");
        assert!(
            partitions.len() > 2,
            "idle workers split the partitions: {} partitions {reports:#?} {:#?}",
            partitions.len(),
            partitions
                .iter()
                .map(|p| (
                    p.id,
                    p.items_total,
                    p.items_done,
                    p.split_requested,
                    p.state,
                    p.runs
                ))
                .collect::<Vec<_>>()
        );
        let (total, distinct, repeated) = effects(db).await;
        assert_eq!(
            (total, distinct, repeated),
            (n, n, 0),
            "every effect exactly once"
        );
        let done: u64 = partitions.iter().map(|p| p.items_done).sum();
        assert_eq!(done, n as u64);
    });
}

// ---------------------------------------------------------------------------------
// forwarding: one scenario per `Job` method the adapter must pass to the inner job

/// A transactional job whose every method answers something no default would, and
/// records the calls that return nothing.
struct Marked<H> {
    calls: Arc<Mutex<Vec<String>>>,
    _harness: PhantomData<fn() -> H>,
}

impl<H: SqlHarness> TransactionalJob<DbOf<H>> for Marked<H> {
    const KIND: &'static str = "marked";
    const PARTITIONABLE: bool = true;
    type Params = i64;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &i64,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..*params, cursor))
    }

    async fn process(
        &self,
        _ctx: &JobContext<i64>,
        _item: i64,
        _tx: &mut Transaction<'_, DbOf<H>>,
    ) -> Result<(), JobError> {
        Ok(())
    }

    fn count_items(&self, item: &i64) -> u64 {
        (*item as u64) * 10 + 7
    }

    async fn total(&self, params: &i64) -> Result<Option<u64>, JobError> {
        Ok(Some(*params as u64 * 3))
    }

    async fn throttle(&self, _ctx: &JobContext<i64>) -> Option<Duration> {
        Some(Duration::from_millis(4321))
    }

    async fn on_start(&self, _ctx: &JobContext<i64>) -> Result<(), JobError> {
        Err(JobError::fatal("marked on_start"))
    }

    async fn on_resume(&self, _ctx: &JobContext<i64>) -> Result<(), JobError> {
        Err(JobError::fatal("marked on_resume"))
    }

    async fn on_interrupt(&self, _ctx: &JobContext<i64>, reason: InterruptReason) {
        self.calls
            .lock()
            .expect("calls")
            .push(format!("on_interrupt {reason}"));
    }

    async fn on_complete(&self, _ctx: &JobContext<i64>) -> Result<(), JobError> {
        Err(JobError::fatal("marked on_complete"))
    }

    async fn on_error(&self, _ctx: &JobContext<i64>, error: &JobError) {
        self.calls
            .lock()
            .expect("calls")
            .push(format!("on_error {error}"));
    }

    async fn partition(&self, params: &i64, n: u32) -> Result<Vec<i64>, JobError> {
        Ok(vec![*params + i64::from(n); 2])
    }

    async fn split(
        &self,
        params: &i64,
        cursor: Option<&i64>,
    ) -> Result<SplitParams<i64>, JobError> {
        Ok(Some((*params, cursor.copied().unwrap_or(-1))))
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default()
            .max_runtime(Duration::from_secs(777))
            .checkpoint_every(13)
            .queue("marked-queue")
    }
}

/// Builds the adapter around a [`Marked`] job and hands it, with a context, to
/// `check`.
fn forwarding<H: SqlHarness>(
    check: impl AsyncFnOnce(
        &Transactional<Marked<H>, H::Store>,
        JobContext<i64>,
        Arc<Mutex<Vec<String>>>,
    ),
) {
    with_db::<H>(LIMIT, async |db| {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let job = Transactional::new(
            Marked::<H> {
                calls: Arc::clone(&calls),
                _harness: PhantomData,
            },
            db.store().clone(),
        );
        let ctx = JobContext {
            params: 5,
            job_id: 1,
            attempt: 0,
            run: 1,
            queue: "default".into(),
            run_token: RunToken(1),
            lease: std::time::Duration::from_secs(30),
            lease_renewal: iterjob::LeaseRenewal::default(),
        };
        check(&job, ctx, calls).await;
    });
}

/// `count_items` reaches the inner job.
pub fn forwards_count_items<H: SqlHarness>() {
    forwarding::<H>(async |job, _, _| {
        assert_eq!(Job::count_items(job, &(3, 4)), 37);
    });
}

/// `total` reaches the inner job.
pub fn forwards_total<H: SqlHarness>() {
    forwarding::<H>(async |job, _, _| {
        assert_eq!(Job::total(job, &5).await.expect("total"), Some(15));
    });
}

/// `throttle` reaches the inner job.
pub fn forwards_throttle<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, _| {
        assert_eq!(
            Job::throttle(job, &ctx).await,
            Some(Duration::from_millis(4321))
        );
    });
}

/// `on_start` reaches the inner job.
pub fn forwards_on_start<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, _| {
        let err = Job::on_start(job, &ctx).await.expect_err("inner on_start");
        assert!(err.to_string().contains("marked on_start"), "{err}");
    });
}

/// `on_resume` reaches the inner job.
pub fn forwards_on_resume<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, _| {
        let err = Job::on_resume(job, &ctx)
            .await
            .expect_err("inner on_resume");
        assert!(err.to_string().contains("marked on_resume"), "{err}");
    });
}

/// `on_interrupt` reaches the inner job.
pub fn forwards_on_interrupt<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, calls| {
        Job::on_interrupt(job, &ctx, InterruptReason::TimeSlice).await;
        assert_eq!(
            *calls.lock().expect("calls"),
            vec!["on_interrupt time_slice"]
        );
    });
}

/// `on_complete` reaches the inner job.
pub fn forwards_on_complete<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, _| {
        let err = Job::on_complete(job, &ctx)
            .await
            .expect_err("inner on_complete");
        assert!(err.to_string().contains("marked on_complete"), "{err}");
    });
}

/// `on_error` reaches the inner job.
pub fn forwards_on_error<H: SqlHarness>() {
    forwarding::<H>(async |job, ctx, calls| {
        Job::on_error(job, &ctx, &JobError::retryable("boom")).await;
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(
            calls[0].starts_with("on_error") && calls[0].contains("boom"),
            "{calls:?}"
        );
    });
}

/// `partition` reaches the inner job, and so does its declaration
/// (`PARTITIONABLE`), which enqueue checks.
pub fn forwards_partition<H: SqlHarness>() {
    forwarding::<H>(async |job, _, _| {
        fn partitionable<J: Job>(_: &J) -> bool {
            J::PARTITIONABLE
        }
        assert!(partitionable(job), "PARTITIONABLE reaches the adapter");
        assert_eq!(
            Job::partition(job, &5, 3).await.expect("partition"),
            vec![8, 8]
        );
    });
}

/// `split` reaches the inner job.
pub fn forwards_split<H: SqlHarness>() {
    forwarding::<H>(async |job, _, _| {
        assert_eq!(
            Job::split(job, &5, Some(&2)).await.expect("split"),
            Some((5, 2))
        );
    });
}

/// `settings` reaches the inner job.
pub fn forwards_settings<H: SqlHarness>() {
    forwarding::<H>(async |job, _, _| {
        let settings = Job::settings(job);
        assert_eq!(settings.max_runtime, Some(Duration::from_secs(777)));
        assert_eq!(settings.checkpoint_every, Some(13));
        assert_eq!(settings.queue.as_deref(), Some("marked-queue"));
    });
}
