//! Runtime scenarios: the worker and run loop against a real store, checked for
//! resume exactness, retries, panics, time slices, pause/cancel, throttling and bad
//! stored data. Every store's tests run them through [`runtime_scenarios!`](crate::runtime_scenarios).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{JobId, JobState, NewJob, Store};
use iterjob::{Job, JobContext, JobError, Registry, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};

pub use crate::backpressure::{
    health_check_holds_jobs_back_until_it_passes, throttle_switch_holds_jobs_back_until_off,
};
pub use crate::fairness::{
    a_job_held_ahead_goes_to_an_idle_worker, fewer_slots_than_jobs_every_job_progresses,
};
pub use crate::partitions::{
    dynamic_splitting_takes_over_a_slow_partition, failed_partition_fails_parent_and_retry_resumes,
    parent_pause_resume_while_running, partitioned_job_survives_many_shutdowns,
    partitioned_job_walks_every_item_once, partitioning_a_kind_that_cannot_fails_clearly,
};
pub use crate::queues::{
    queue_pause_interrupts_or_lets_runs_finish, retention_prunes_old_finished_jobs,
};
pub use crate::schedules::workers_racing_a_schedule_enqueue_each_tick_once;

/// Which items each job processed, in order, across every run.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    seen: Arc<Mutex<BTreeMap<JobId, Vec<i64>>>>,
}

impl Recorder {
    /// Records that `job` processed `item`.
    pub fn record(&self, job: JobId, item: i64) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(job)
            .or_default()
            .push(item);
    }

    /// The items `job` processed, in order.
    pub fn items(&self, job: JobId) -> Vec<i64> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job)
            .cloned()
            .unwrap_or_default()
    }

    /// Every (job, item) processed, in the global order seen.
    pub fn total(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// A job kind for scenarios: walks `0..n`, recording each item, with injected
/// latency, errors, panics, hangs and throttling.
#[derive(Clone, Debug, Default)]
pub struct CountingJob {
    /// Where processed items go.
    pub recorder: Recorder,
    /// Items that raise an error while `fail_times` is not used up.
    failures: Arc<AtomicU32>,
    /// Set when the throttle condition has been reported once.
    throttled: Arc<AtomicBool>,
    /// Order in which items of any job were processed: (job, item).
    pub order: Arc<Mutex<Vec<(JobId, i64)>>>,
}

/// Parameters of [`CountingJob`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CountingParams {
    /// Items: `0..n`.
    pub n: i64,
    /// Sleep this long per item.
    pub sleep_ms: u64,
    /// Fail at this item…
    pub fail_at: Option<i64>,
    /// …this many times (retryable), or always if `fatal`.
    pub fail_times: u32,
    /// Make the failure fatal.
    pub fatal: bool,
    /// Panic at this item, every time.
    pub panic_at: Option<i64>,
    /// Hang forever at this item.
    pub hang_at: Option<i64>,
    /// Report the throttle condition once, with this backoff.
    pub throttle_once_ms: Option<u64>,
}

impl CountingJob {
    /// A fresh job kind with its own recorder.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Job for CountingJob {
    const KIND: &'static str = "counting";
    type Params = CountingParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &CountingParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..params.n, cursor))
    }

    async fn process(&self, ctx: &JobContext<CountingParams>, item: i64) -> Result<(), JobError> {
        let p = &ctx.params;
        if p.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
        }
        if p.hang_at == Some(item) {
            std::future::pending::<()>().await;
        }
        if p.panic_at == Some(item) {
            panic!("boom at item {item}");
        }
        if p.fail_at == Some(item) {
            if p.fatal {
                return Err(JobError::fatal(format!("item {item} is malformed")));
            }
            if self.failures.fetch_add(1, Ordering::SeqCst) < p.fail_times {
                return Err(JobError::retryable(format!(
                    "flaky upstream at item {item}"
                )));
            }
        }
        self.recorder.record(ctx.job_id, item);
        self.order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ctx.job_id, item));
        Ok(())
    }

    async fn throttle(&self, ctx: &JobContext<CountingParams>) -> Option<Duration> {
        let ms = ctx.params.throttle_once_ms?;
        (!self.throttled.swap(true, Ordering::SeqCst)).then(|| Duration::from_millis(ms))
    }

    async fn total(&self, params: &CountingParams) -> Result<Option<u64>, JobError> {
        Ok(Some(params.n as u64))
    }
}

/// A worker configuration for fast tests: short intervals everywhere.
pub fn fast_config() -> WorkerConfig {
    let mut c = WorkerConfig::default();
    c.concurrency = 2;
    c.poll_interval = Duration::from_millis(10);
    c.lease = Duration::from_secs(5);
    c.heartbeat_interval = Duration::from_millis(200);
    c.checkpoint_interval = Duration::from_millis(20);
    c.retry_base = Duration::from_millis(10);
    c.retry_max = Duration::from_millis(50);
    c.rescue_interval = Duration::from_millis(50);
    c.shutdown_timeout = Duration::from_secs(5);
    // retention has its own scenario; elsewhere its passes would only add store
    // traffic to scenarios that time their signals
    c.retention = None;
    c.presence_interval = Duration::from_millis(200);
    c
}

async fn enqueue(store: &Arc<dyn Store>, job: &CountingJob, params: CountingParams) -> JobId {
    store
        .job_insert(&NewJob::of(job, &params).expect("params serialize"))
        .await
        .expect("enqueue")
}

async fn get(store: &Arc<dyn Store>, id: JobId) -> iterjob::JobRecord {
    store.job_get(id).await.expect("get").expect("job exists")
}

/// Runs a worker until no job is queued, retrying or running, or `limit` passes.
async fn drain(store: &Arc<dyn Store>, job: &CountingJob, config: WorkerConfig, limit: Duration) {
    let worker = Worker::new(Arc::clone(store), Registry::new().with(job.clone()), config)
        .expect("valid config");
    let token = worker.shutdown_token();
    let run = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let counts = store.job_count_by_state().await.expect("counts");
        let pending: u64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, JobState::Queued | JobState::Retrying | JobState::Running))
            .map(|(_, n)| n)
            .sum();
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not finish within {limit:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    run.await.expect("join").expect("worker ran");
}

/// A job walks its collection, each item exactly once, in order.
pub async fn completes_every_item_once(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let id = enqueue(
        &store,
        &job,
        CountingParams {
            n: 500,
            ..Default::default()
        },
    )
    .await;
    drain(&store, &job, fast_config(), Duration::from_secs(30)).await;
    let record = get(&store, id).await;
    assert_eq!(record.state, JobState::Completed);
    assert_eq!(record.items_done, 500);
    assert_eq!(record.items_total, Some(500));
    assert_eq!(record.cursor, Some(serde_json::json!(500)));
    assert_eq!(job.recorder.items(id), (0..500).collect::<Vec<_>>());
}

/// A job interrupted by worker shutdown many times completes with every item
/// processed exactly once.
pub async fn shutdown_many_times_resumes_exactly(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let id = enqueue(
        &store,
        &job,
        CountingParams {
            n: 400,
            sleep_ms: 1,
            ..Default::default()
        },
    )
    .await;
    let mut shutdowns = 0;
    // interruptions the workers reported: each shutdown of the run, plus a job a
    // claim in flight at the shutdown took and gave back unstarted (the store counts
    // that as a run and an interruption too; `WorkerReport::interrupted`)
    let mut reported = 0;
    for round in 0..200 {
        let worker = Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            fast_config(),
        )
        .expect("config");
        let token = worker.shutdown_token();
        let stop = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(15 + (round % 7) * 5)).await;
            token.cancel();
        });
        reported += worker.run().await.expect("worker").interrupted;
        stop.await.expect("stopper");
        let record = get(&store, id).await;
        if record.state == JobState::Completed {
            break;
        }
        shutdowns += 1;
        assert_eq!(
            record.state,
            JobState::Queued,
            "interrupted job goes back to queued"
        );
    }
    let record = get(&store, id).await;
    assert_eq!(record.state, JobState::Completed, "job completed");
    assert!(
        shutdowns >= 3,
        "the job was interrupted several times ({shutdowns})"
    );
    if u64::from(record.interruptions) != reported || reported < shutdowns as u64 {
        let events = store.job_events(id, 1000).await.expect("events");
        let summary: Vec<String> = events
            .iter()
            .map(|e| format!("{:?}/{:?}", e.kind, e.reason))
            .collect();
        panic!(
            "{} interruptions stored, {reported} reported by the workers, for {shutdowns} \
             shutdowns; history: {summary:?}",
            record.interruptions
        );
    }
    assert_eq!(record.attempts, 0, "interruptions do not use up attempts");
    assert_eq!(
        job.recorder.items(id),
        (0..400).collect::<Vec<_>>(),
        "each item exactly once, in order"
    );
}

/// A retryable error retries from the last checkpoint: the item that failed runs
/// again, the items before it do not.
pub async fn retry_resumes_from_checkpoint(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let params = CountingParams {
        n: 100,
        fail_at: Some(60),
        fail_times: 2,
        ..Default::default()
    };
    let id = enqueue(&store, &job, params).await;
    drain(&store, &job, fast_config(), Duration::from_secs(30)).await;
    let record = get(&store, id).await;
    assert_eq!(record.state, JobState::Completed);
    assert_eq!(record.attempts, 2, "two failed attempts were counted");
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("flaky upstream at item 60")
    );
    assert_eq!(
        job.recorder.items(id),
        (0..100).collect::<Vec<_>>(),
        "no item before the failure ran twice"
    );
}

/// A fatal error fails the job at once, with the cursor just before the bad item.
pub async fn fatal_error_fails_without_retry(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let params = CountingParams {
        n: 100,
        fail_at: Some(30),
        fatal: true,
        ..Default::default()
    };
    let id = enqueue(&store, &job, params).await;
    drain(&store, &job, fast_config(), Duration::from_secs(30)).await;
    let record = get(&store, id).await;
    assert_eq!(record.state, JobState::Failed);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.cursor, Some(serde_json::json!(30)));
    assert_eq!(record.items_done, 30);
    let error = record.last_error.expect("error stored");
    assert!(
        error.contains("fatal") && error.contains("item 30 is malformed"),
        "{error}"
    );
    // where it failed: the bad item's own cursor (just past it), the attempt, the
    // worker; no backtrace for an error that is not a panic
    let failure = record.last_failure.expect("where the run failed is stored");
    assert_eq!(failure.item, Some(serde_json::json!(31)), "{failure:?}");
    assert_eq!(failure.attempt, 1);
    assert!(!failure.worker.is_empty(), "{failure:?}");
    assert_eq!(failure.backtrace, None);
}

/// A panic in the work is caught, stored as the job's error, retried up to the
/// budget, and does not disturb another job on the same worker.
pub async fn panic_is_stored_and_worker_keeps_serving(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let bad = store
        .job_insert(
            &NewJob::of(
                &job,
                &CountingParams {
                    n: 50,
                    panic_at: Some(10),
                    ..Default::default()
                },
            )
            .expect("params")
            .max_attempts(2),
        )
        .await
        .expect("enqueue");
    let good = enqueue(
        &store,
        &job,
        CountingParams {
            n: 300,
            ..Default::default()
        },
    )
    .await;
    drain(&store, &job, fast_config(), Duration::from_secs(30)).await;
    let bad = get(&store, bad).await;
    assert_eq!(bad.state, JobState::Failed);
    assert_eq!(bad.attempts, 2);
    assert_eq!(
        bad.cursor,
        Some(serde_json::json!(10)),
        "checkpoint just before the panicking item"
    );
    let error = bad.last_error.expect("error stored");
    assert!(
        error.contains("panicked") && error.contains("boom at item 10"),
        "{error}"
    );
    assert!(error.contains("no attempts left"), "{error}");
    let failure = bad.last_failure.expect("where the run failed is stored");
    assert_eq!(failure.item, Some(serde_json::json!(11)), "{failure:?}");
    assert_eq!(failure.attempt, 2, "the last attempt's");
    let backtrace = failure.backtrace.expect("a panic keeps its backtrace");
    assert!(
        backtrace.contains("CountingJob") && backtrace.contains("process"),
        "the backtrace reaches the job's code:\n{backtrace}"
    );
    assert!(
        !backtrace.contains("core::panicking::panic_fmt"),
        "the panic machinery is trimmed:\n{backtrace}"
    );
    let good = get(&store, good).await;
    assert_eq!(good.state, JobState::Completed);
    assert_eq!(job.recorder.items(good.id), (0..300).collect::<Vec<_>>());
}

/// With one worker slot, two long jobs share it through time slices.
pub async fn time_slices_share_one_slot(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let a = enqueue(
        &store,
        &job,
        CountingParams {
            n: 150,
            sleep_ms: 2,
            ..Default::default()
        },
    )
    .await;
    let b = enqueue(
        &store,
        &job,
        CountingParams {
            n: 150,
            sleep_ms: 2,
            ..Default::default()
        },
    )
    .await;
    let mut config = fast_config();
    config.concurrency = 1;
    config.max_runtime = Duration::from_millis(60);
    drain(&store, &job, config, Duration::from_secs(60)).await;
    let (ra, rb) = (get(&store, a).await, get(&store, b).await);
    assert_eq!(
        (ra.state, rb.state),
        (JobState::Completed, JobState::Completed)
    );
    assert!(
        ra.interruptions >= 2 && rb.interruptions >= 1,
        "both yielded their slot: {} {}",
        ra.interruptions,
        rb.interruptions
    );
    let order = job.order.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let first_b = order.iter().position(|(j, _)| *j == b).expect("b ran");
    let last_a = order.iter().rposition(|(j, _)| *j == a).expect("a ran");
    assert!(
        first_b < last_a,
        "b started before a finished: the jobs took turns"
    );
    assert_eq!(job.recorder.items(a), (0..150).collect::<Vec<_>>());
    assert_eq!(job.recorder.items(b), (0..150).collect::<Vec<_>>());
}

/// `run_until_idle` returns only once nothing is left: a job its own time slice put
/// back in the queue is claimed again, never left behind (before, a worker whose
/// last claim had found nothing returned when that run ended, with the job still
/// queued: `iterjob worker --until-idle` stopped half-way through a long job).
pub async fn until_idle_finishes_time_sliced_jobs(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    for round in 0..10 {
        let id = enqueue(
            &store,
            &job,
            CountingParams {
                n: 40,
                sleep_ms: 1,
                ..Default::default()
            },
        )
        .await;
        let mut config = fast_config();
        config.concurrency = 2;
        config.max_runtime = Duration::from_millis(15);
        let worker = Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            config,
        )
        .expect("valid config");
        let report = tokio::time::timeout(Duration::from_secs(60), worker.run_until_idle())
            .await
            .expect("run_until_idle returns")
            .expect("worker ran");
        let record = get(&store, id).await;
        assert_eq!(
            record.state,
            JobState::Completed,
            "round {round}: run_until_idle returned after {} runs with the job {} at item {}",
            report.runs,
            record.state,
            record.items_done
        );
        assert_eq!(job.recorder.items(id), (0..40).collect::<Vec<_>>());
    }
}

/// A running worker is listed by [`Store::workers`] with its queues, kinds and
/// slots, the slots in use while a job runs, and is gone once it stopped cleanly.
pub async fn a_worker_is_listed_while_it_runs(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let id = enqueue(
        &store,
        &job,
        CountingParams {
            n: 100_000,
            sleep_ms: 1,
            ..Default::default()
        },
    )
    .await;
    let mut config = fast_config();
    config.worker_id = format!("presence-{id}-{}", std::process::id());
    config.queues = vec!["default".into(), "other".into()];
    let worker = Arc::new(
        Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            config.clone(),
        )
        .expect("config"),
    );
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    let mut seen = None;
    for _ in 0..100 {
        let workers = store.workers().await.expect("workers");
        if let Some(w) = workers.into_iter().find(|w| w.id == config.worker_id)
            && w.running == 1
        {
            seen = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.expect("the worker listed with its job running within 5 s");
    assert_eq!(
        seen.queues,
        vec!["default".to_string(), "other".to_string()]
    );
    assert_eq!(seen.kinds, vec!["counting".to_string()]);
    assert_eq!(seen.concurrency, 2);
    assert_eq!(seen.pid, std::process::id());
    assert_eq!(seen.beat_every_ms, 200, "the presence interval");
    assert!(!seen.is_silent(iterjob::store::now_millis()));
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker run");
    assert!(
        store
            .workers()
            .await
            .unwrap()
            .iter()
            .all(|w| w.id != config.worker_id),
        "a worker that stopped cleanly is no longer listed"
    );
}

/// Pause and cancel requested through the store while the job runs take effect at
/// the next item boundary; resume continues from the cursor.
pub async fn pause_resume_cancel_while_running(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let paused = enqueue(
        &store,
        &job,
        CountingParams {
            n: 2000,
            sleep_ms: 1,
            ..Default::default()
        },
    )
    .await;
    let cancelled = enqueue(
        &store,
        &job,
        CountingParams {
            n: 2000,
            sleep_ms: 1,
            ..Default::default()
        },
    )
    .await;
    let worker = Arc::new(
        Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            fast_config(),
        )
        .expect("config"),
    );
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.job_pause(paused).await.expect("pause");
    store.job_cancel(cancelled).await.expect("cancel");
    for _ in 0..200 {
        let (p, c) = (get(&store, paused).await, get(&store, cancelled).await);
        if p.state == JobState::Paused && c.state == JobState::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = get(&store, paused).await;
    assert_eq!(p.state, JobState::Paused);
    assert!(p.items_done > 0 && p.items_done < 2000);
    let c = get(&store, cancelled).await;
    assert_eq!(c.state, JobState::Cancelled);
    assert!(c.finished_at.is_some());
    store.job_resume(paused).await.expect("resume");
    for _ in 0..1000 {
        if get(&store, paused).await.state == JobState::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
    assert_eq!(get(&store, paused).await.state, JobState::Completed);
    assert_eq!(job.recorder.items(paused), (0..2000).collect::<Vec<_>>());
    let done = job.recorder.items(cancelled);
    assert_eq!(done, (0..done.len() as i64).collect::<Vec<_>>());
}

/// A throttled job checkpoints, frees its worker, backs off, and completes.
pub async fn throttle_backs_off_and_resumes(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let params = CountingParams {
        n: 300,
        throttle_once_ms: Some(100),
        ..Default::default()
    };
    let id = enqueue(&store, &job, params).await;
    let mut config = fast_config();
    config.poll_interval = Duration::from_millis(10);
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        config,
    )
    .expect("config");
    let token = worker.shutdown_token();
    let run = tokio::spawn(async move { worker.run().await });
    let mut saw_queued_later = false;
    for _ in 0..500 {
        let r = get(&store, id).await;
        if r.state == JobState::Queued
            && r.interruptions == 1
            && r.run_at > iterjob::store::now_millis()
        {
            saw_queued_later = true;
        }
        if r.state == JobState::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    token.cancel();
    run.await.expect("join").expect("worker");
    let r = get(&store, id).await;
    assert_eq!(r.state, JobState::Completed);
    assert_eq!(r.interruptions, 1, "one throttle interruption");
    assert_eq!(r.attempts, 0, "throttling does not use up attempts");
    assert!(
        saw_queued_later,
        "the throttled job waited in the queue for its backoff"
    );
    assert_eq!(job.recorder.items(id), (0..300).collect::<Vec<_>>());
}

/// Stored parameters that no longer fit, and a stored cursor that no longer
/// deserializes, fail their job with a clear error; other jobs run on.
pub async fn bad_stored_data_fails_only_that_job(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let bad_params = store
        .job_insert(&NewJob::new(
            CountingJob::KIND,
            serde_json::json!({"n": "many"}),
        ))
        .await
        .expect("enqueue");
    let mut bad_cursor = NewJob::of(
        &job,
        &CountingParams {
            n: 10,
            ..Default::default()
        },
    )
    .expect("params");
    bad_cursor.cursor = Some(serde_json::json!({"page": "seven"}));
    let bad_cursor = store.job_insert(&bad_cursor).await.expect("enqueue");
    let good = enqueue(
        &store,
        &job,
        CountingParams {
            n: 100,
            ..Default::default()
        },
    )
    .await;
    drain(&store, &job, fast_config(), Duration::from_secs(30)).await;

    let r = get(&store, bad_params).await;
    assert_eq!(r.state, JobState::Failed);
    let e = r.last_error.expect("error");
    assert!(e.contains("field `n`") && e.contains("counting"), "{e}");
    let r = get(&store, bad_cursor).await;
    assert_eq!(r.state, JobState::Failed);
    let e = r.last_error.expect("error");
    assert!(e.contains("stored cursor") && e.contains("seven"), "{e}");
    assert_eq!(
        r.cursor,
        Some(serde_json::json!({"page": "seven"})),
        "the bad cursor is kept for inspection"
    );
    assert_eq!(get(&store, good).await.state, JobState::Completed);
}

/// A job stuck inside one item is stopped at the shutdown deadline and released at
/// its last checkpoint, not left leased.
pub async fn shutdown_deadline_releases_stuck_job(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let params = CountingParams {
        n: 100,
        sleep_ms: 5,
        hang_at: Some(40),
        ..Default::default()
    };
    let id = enqueue(&store, &job, params).await;
    let mut config = fast_config();
    config.shutdown_timeout = Duration::from_millis(200);
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        config,
    )
    .expect("config");
    let token = worker.shutdown_token();
    let run = tokio::spawn(async move { worker.run().await });
    // shut down once the job hangs inside item 40 (items 0..40 done), however long a
    // loaded machine took to get there
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while job.recorder.items(id).len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not reach item 40"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    token.cancel();
    let report = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("worker stopped at its deadline")
        .expect("join")
        .expect("worker");
    assert_eq!(report.aborted, 1);
    let r = get(&store, id).await;
    assert_eq!(r.state, JobState::Queued, "released, not left leased");
    let cursor = r
        .cursor
        .as_ref()
        .and_then(|c| c.as_u64())
        .expect("a checkpoint was written");
    assert!(
        (20..=40).contains(&cursor),
        "released at its last checkpoint before the stuck item: {cursor}"
    );
    assert_eq!(r.items_done, cursor);
    assert_eq!(r.worker_id, None);
}

/// Expands to one `#[tokio::test]` per runtime scenario. `$make` is an async
/// expression yielding a fresh, migrated store as `Arc<dyn Store>`.
#[macro_export]
macro_rules! runtime_scenarios {
    ($make:expr) => {
        $crate::runtime_scenarios!(@each $make;
            completes_every_item_once,
            shutdown_many_times_resumes_exactly,
            retry_resumes_from_checkpoint,
            fatal_error_fails_without_retry,
            panic_is_stored_and_worker_keeps_serving,
            time_slices_share_one_slot,
            until_idle_finishes_time_sliced_jobs,
            pause_resume_cancel_while_running,
            a_worker_is_listed_while_it_runs,
            throttle_backs_off_and_resumes,
            bad_stored_data_fails_only_that_job,
            shutdown_deadline_releases_stuck_job,
            partitioned_job_walks_every_item_once,
            partitioned_job_survives_many_shutdowns,
            dynamic_splitting_takes_over_a_slow_partition,
            parent_pause_resume_while_running,
            failed_partition_fails_parent_and_retry_resumes,
            partitioning_a_kind_that_cannot_fails_clearly,
            fewer_slots_than_jobs_every_job_progresses,
            a_job_held_ahead_goes_to_an_idle_worker,
            queue_pause_interrupts_or_lets_runs_finish,
            retention_prunes_old_finished_jobs,
            workers_racing_a_schedule_enqueue_each_tick_once,
            throttle_switch_holds_jobs_back_until_off,
            health_check_holds_jobs_back_until_it_passes,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn ::iterjob::Store> = $make.await;
                $crate::scenarios::$name(store).await;
            }
        )*
    };
}
