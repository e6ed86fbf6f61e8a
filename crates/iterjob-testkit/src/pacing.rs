//! Pacing scenarios: shared rate limits and adaptive throttling, run by the worker
//! against a real store. Every store's tests run them through
//! [`pacing_scenarios!`](crate::pacing_scenarios).
//!
//! The timing assertions leave room for a loaded machine (2 cores shared with other
//! builds) but not for a broken feature: a rate limit must hold within 10 %, and the
//! adaptive throttle must visibly slow a job down and speed it up again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::store::{JobId, JobState, NewJob, Store};
use iterjob::{
    AdaptiveThrottle, Job, JobContext, JobError, KindSettings, RateLimit, Registry, Worker,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::scenarios::fast_config;

/// A job kind for pacing scenarios: walks `0..n` in batches of `batch`, records when
/// each batch was processed, and takes as long per batch as [`PacedJob::latency`]
/// says (changeable while it runs).
#[derive(Clone, Debug)]
pub struct PacedJob {
    settings: KindSettings,
    /// Injected latency of the work, in milliseconds.
    pub latency_ms: Arc<AtomicU64>,
    /// Every batch processed, in order.
    pub log: Arc<Mutex<Vec<Processed>>>,
}

/// One batch a [`PacedJob`] processed: (job, first item of the batch, items in the
/// batch, when it was processed).
pub type Processed = (JobId, i64, u64, Instant);

/// Parameters of [`PacedJob`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PacedParams {
    /// Items: `0..n`.
    pub n: i64,
    /// Items per call of `process` (and per count of the rate limit).
    pub batch: usize,
}

impl PacedJob {
    /// A kind with these settings and no injected latency.
    pub fn new(settings: KindSettings) -> Self {
        PacedJob {
            settings,
            latency_ms: Arc::default(),
            log: Arc::default(),
        }
    }

    /// Sets the injected latency.
    pub fn latency(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Items processed (batches counted by their length) with a timestamp in
    /// `from..to`.
    pub fn items_between(&self, from: Instant, to: Instant) -> u64 {
        self.log()
            .iter()
            .filter(|(_, _, _, at)| *at >= from && *at < to)
            .map(|(_, _, n, _)| n)
            .sum()
    }

    /// Every (job, first item, items, when), in the order processed.
    pub fn log(&self) -> Vec<Processed> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first items of every batch `job` processed, in order.
    pub fn items_of(&self, job: JobId) -> Vec<i64> {
        self.log()
            .iter()
            .filter(|(j, ..)| *j == job)
            .map(|(_, first, ..)| *first)
            .collect()
    }
}

impl Job for PacedJob {
    const KIND: &'static str = "paced";
    type Params = PacedParams;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &PacedParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        Ok(enumerator::range(0..params.n, cursor).batched(params.batch))
    }

    async fn process(
        &self,
        ctx: &JobContext<PacedParams>,
        batch: Vec<i64>,
    ) -> Result<(), JobError> {
        let ms = self.latency_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push((
            ctx.job_id,
            batch[0],
            batch.len() as u64,
            Instant::now(),
        ));
        Ok(())
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    fn settings(&self) -> KindSettings {
        self.settings.clone()
    }
}

async fn enqueue(store: &Arc<dyn Store>, job: &PacedJob, n: i64, batch: usize) -> JobId {
    store
        .job_insert(&NewJob::of(job, &PacedParams { n, batch }).expect("params"))
        .await
        .expect("enqueue")
}

async fn get(store: &Arc<dyn Store>, id: JobId) -> iterjob::JobRecord {
    store.job_get(id).await.expect("get").expect("job exists")
}

fn worker(store: &Arc<dyn Store>, job: &PacedJob, concurrency: usize) -> Arc<Worker> {
    let mut config = fast_config();
    config.concurrency = concurrency;
    // checkpoints five times a second, not fifty: six jobs on an SQLite file with
    // `synchronous=FULL` would spend the machine's time in fsync otherwise
    config.checkpoint_interval = Duration::from_millis(200);
    Arc::new(
        Worker::new(Arc::clone(store), Registry::new().with(job.clone()), config).expect("config"),
    )
}

fn spawn(worker: &Arc<Worker>) -> tokio::task::JoinHandle<iterjob::WorkerReport> {
    let worker = Arc::clone(worker);
    tokio::spawn(async move { worker.run().await.expect("worker ran") })
}

/// Polls `cond` every 10 ms for up to `limit`; panics with `what` if it never holds.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A rate limit holds over three workers (each with two jobs running) sharing the
/// store: the items per second measured over 2 s of steady state are within 10 % of
/// the limit, counting batch items one by one (batches of 5 at 250 items/s).
pub async fn rate_limit_holds_across_workers(store: Arc<dyn Store>) {
    let job = PacedJob::new(KindSettings::default().rate_limit(RateLimit::per_second(250)));
    for _ in 0..6 {
        enqueue(&store, &job, 1_000_000, 5).await;
    }
    let workers: Vec<_> = (0..3).map(|_| worker(&store, &job, 2)).collect();
    let runs: Vec<_> = workers.iter().map(spawn).collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to = Instant::now();
    for w in &workers {
        w.shutdown_token().cancel();
    }
    for run in runs {
        run.await.expect("join");
    }
    let items = job.items_between(from, to);
    let rate = items as f64 / (to - from).as_secs_f64();
    eprintln!("rate limit 250/s over 3 workers x 2 jobs: measured {rate:.1} items/s");
    assert!(
        (225.0..=275.0).contains(&rate),
        "a limit of 250 items/s shared by 3 workers gave {rate:.1} items/s ({items} items)"
    );
    let jobs: std::collections::BTreeSet<JobId> = job.log().iter().map(|(j, ..)| *j).collect();
    assert_eq!(jobs.len(), 6, "every job got a share of the limit");
}

/// While a run waits for its rate limit, it still stops within about 100 ms on
/// shutdown, and a cancel request reaches it within a checkpoint interval.
pub async fn rate_limited_wait_reacts_to_signals(store: Arc<dyn Store>) {
    // one item a minute: the first goes at once, the second waits a minute
    let job = PacedJob::new(KindSettings::default().rate_limit(RateLimit::per_minute(1)));
    let id = enqueue(&store, &job, 10, 1).await;
    let w = worker(&store, &job, 1);
    let run = spawn(&w);
    eventually(
        Duration::from_secs(5),
        "the first item is processed",
        || {
            let done = !job.items_of(id).is_empty();
            async move { done }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // now waiting for the second
    let stop = Instant::now();
    w.shutdown_token().cancel();
    let report = run.await.expect("join");
    let took = stop.elapsed();
    eprintln!("shutdown during a rate-limit wait: worker stopped in {took:?}");
    assert!(
        took < Duration::from_millis(500),
        "shutdown during a rate-limit wait took {took:?}"
    );
    assert_eq!(report.interrupted, 1, "{report:?}");
    let r = get(&store, id).await;
    assert_eq!((r.state, r.items_done), (JobState::Queued, 1));

    // the same job, on a new worker: the bucket still holds the second item's slot,
    // so it waits again; a cancel request ends it
    let w = worker(&store, &job, 1);
    let run = spawn(&w);
    eventually(Duration::from_secs(5), "the job runs again", || {
        let store = Arc::clone(&store);
        async move { get(&store, id).await.state == JobState::Running }
    })
    .await;
    let asked = Instant::now();
    store.job_cancel(id).await.expect("cancel");
    eventually(Duration::from_secs(2), "the cancel is honoured", || {
        let store = Arc::clone(&store);
        async move { get(&store, id).await.state == JobState::Cancelled }
    })
    .await;
    let took = asked.elapsed();
    eprintln!("cancel during a rate-limit wait: honoured in {took:?}");
    w.shutdown_token().cancel();
    run.await.expect("join");
    assert!(
        took < Duration::from_secs(1),
        "cancel during a rate-limit wait took {took:?}"
    );
    assert_eq!(job.items_of(id), vec![0], "no item ran past the limit");
}

/// The adaptive throttle reacts to injected latency in both directions: with the
/// work under its 20 ms target the job runs flat out; at 45 ms the delay between
/// items grows and the job slows down; back under the target, the delay falls to
/// zero and the job speeds up again; it never backs off (the limit is 5 s).
pub async fn adaptive_throttle_slows_down_and_recovers(store: Arc<dyn Store>) {
    let job = PacedJob::new(KindSettings::default().adaptive_throttle(
        AdaptiveThrottle::new(Duration::from_millis(20)).max_delay(Duration::from_secs(5)),
    ));
    job.latency(2);
    let id = enqueue(&store, &job, 1_000_000, 1).await;
    let w = worker(&store, &job, 1);
    let run = spawn(&w);
    let delay = || {
        w.running()
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.throttle_delay)
            .unwrap_or_default()
    };
    let window = Duration::from_millis(500);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let fast_from = Instant::now();
    tokio::time::sleep(window).await;
    let fast = job.items_between(fast_from, Instant::now());
    assert_eq!(delay(), Duration::ZERO, "no delay under the target");

    job.latency(45);
    eventually(Duration::from_secs(5), "the delay grows past 40 ms", || {
        let grown = delay() >= Duration::from_millis(40);
        async move { grown }
    })
    .await;
    let slow_from = Instant::now();
    tokio::time::sleep(window).await;
    let slow = job.items_between(slow_from, Instant::now());
    // 45 ms of work alone would allow 11 items in the window; the delay cuts that
    assert!(
        slow <= 7 && slow * 5 < fast,
        "slowed down: {fast} items in {window:?} under target, {slow} above"
    );

    job.latency(2);
    let recovering = Instant::now();
    eventually(
        Duration::from_secs(5),
        "the delay falls back to zero",
        || {
            let zero = delay().is_zero();
            async move { zero }
        },
    )
    .await;
    let took = recovering.elapsed();
    let recovered_from = Instant::now();
    tokio::time::sleep(window).await;
    let recovered = job.items_between(recovered_from, Instant::now());
    w.shutdown_token().cancel();
    run.await.expect("join");
    assert!(
        recovered * 2 > fast,
        "sped up again: {fast} items in {window:?} at first, {recovered} after recovery \
         (delay back to zero after {took:?})"
    );
    eprintln!(
        "adaptive throttle, items per {window:?}: {fast} under target, {slow} above, \
         {recovered} after recovery (delay back to zero in {took:?})"
    );
    let r = get(&store, id).await;
    assert_eq!(
        r.interruptions, 1,
        "only the final shutdown interrupted it (no back-off)"
    );
}

/// Past its max delay the adaptive throttle ends the run as throttled: the job
/// checkpoints, goes back to the queue for its backoff (claimable again later, no
/// attempt used), and completes once the latency is back under target, every item
/// exactly once.
pub async fn adaptive_throttle_backs_off_past_limit(store: Arc<dyn Store>) {
    let job = PacedJob::new(
        KindSettings::default().adaptive_throttle(
            AdaptiveThrottle::new(Duration::from_millis(10))
                .max_delay(Duration::from_millis(60))
                .backoff(Duration::from_millis(700)),
        ),
    );
    job.latency(30);
    let id = enqueue(&store, &job, 200, 1).await;
    let w = worker(&store, &job, 1);
    let run = spawn(&w);
    eventually(Duration::from_secs(10), "the job backs off", || {
        let store = Arc::clone(&store);
        async move {
            let r = get(&store, id).await;
            r.state == JobState::Queued && r.interruptions >= 1
        }
    })
    .await;
    let r = get(&store, id).await;
    assert!(
        r.run_at > iterjob::store::now_millis() + 200,
        "the throttled job waits for its backoff before it is claimable: run_at {} now {}",
        r.run_at,
        iterjob::store::now_millis()
    );
    assert!(r.items_done > 0 && r.items_done < 200, "{r:?}");
    assert_eq!(r.attempts, 0, "backing off uses up no attempt");
    eventually(Duration::from_secs(2), "the worker is free", || {
        let free = w.running().is_empty();
        async move { free }
    })
    .await;
    job.latency(0);
    eventually(
        Duration::from_secs(10),
        "the job completes after its backoff",
        || {
            let store = Arc::clone(&store);
            async move { get(&store, id).await.state == JobState::Completed }
        },
    )
    .await;
    w.shutdown_token().cancel();
    run.await.expect("join");
    assert_eq!(job.items_of(id), (0..200).collect::<Vec<_>>());
    assert_eq!(
        get(&store, id).await.runs,
        2,
        "claimed again after the backoff"
    );
}

/// Expands to one `#[tokio::test]` per pacing scenario. `$make` is an async
/// expression yielding a fresh, migrated store as `Arc<dyn Store>`.
#[macro_export]
macro_rules! pacing_scenarios {
    ($make:expr) => {
        $crate::pacing_scenarios!(@each $make;
            rate_limit_holds_across_workers,
            rate_limited_wait_reacts_to_signals,
            adaptive_throttle_slows_down_and_recovers,
            adaptive_throttle_backs_off_past_limit,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn ::iterjob::Store> = $make.await;
                $crate::pacing::$name(store).await;
            }
        )*
    };
}
