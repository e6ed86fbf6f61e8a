//! Testing your own job kinds: run one to the end and get the items it processed,
//! and check that interrupting it anywhere and resuming yields every item exactly
//! once, in order — the property iterjob checks for its own enumerators, offered
//! for yours.
//!
//! Both helpers drive the real runtime (a [`Worker`] with its checkpoints, hooks
//! and releases) on a [`MemoryStore`] or on the store you give, so what they check
//! is what your job does in production, not a model of it.
//!
//! ```
//! use iterjob::enumerator::{self, Enumerator};
//! use iterjob::testing::{assert_resumes_exactly, run_to_end};
//! use iterjob::{Job, JobContext, JobError};
//!
//! struct Squares;
//!
//! impl Job for Squares {
//!     const KIND: &'static str = "squares";
//!     type Params = i64;
//!     type Cursor = i64;
//!     type Item = i64;
//!     fn enumerate(&self, n: &i64, cursor: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
//!         Ok(enumerator::range(0..*n, cursor))
//!     }
//!     async fn process(&self, _: &JobContext<i64>, _item: i64) -> Result<(), JobError> {
//!         Ok(())
//!     }
//! }
//!
//! # tokio_test_block_on(async {
//! let walk = run_to_end(Squares, &5).await.unwrap();
//! assert_eq!(walk.items, vec![0, 1, 2, 3, 4]);
//! // interrupted after 0, 1, … 5 items and resumed each time: every item once, in order
//! assert_resumes_exactly(Squares, &5).await;
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::CancellationToken;
use crate::enumerator::Enumerator;
use crate::error::{Error, JobError, Result};
use crate::job::{Job, JobContext, KindSettings, SplitParams};
use crate::registry::Registry;
use crate::runtime::{Worker, WorkerConfig};
use crate::store::{InterruptReason, JobId, JobRecord, JobState, MemoryStore, NewJob, Store};

/// What a run to the end did.
#[derive(Debug)]
pub struct Walk<I> {
    /// The items `process` received, in order (a retried item appears again).
    pub items: Vec<I>,
    /// The job as the store holds it at the end.
    pub job: JobRecord,
}

/// The job under test, wrapped to record the items it receives and, when asked, to
/// stop its worker after a given number of them. Forwards everything else.
struct Recorded<J: Job> {
    job: Arc<J>,
    items: Arc<Mutex<Vec<J::Item>>>,
    /// Stop the worker (as a deploy would) once this many items were processed:
    /// its shutdown token, set once the worker is built.
    stop_after: Option<(usize, Arc<std::sync::OnceLock<CancellationToken>>)>,
}

impl<J> Job for Recorded<J>
where
    J: Job,
    J::Item: Clone,
{
    const KIND: &'static str = J::KIND;
    const PARTITIONABLE: bool = J::PARTITIONABLE;
    type Params = J::Params;
    type Cursor = J::Cursor;
    type Item = J::Item;

    fn enumerate(
        &self,
        params: &Self::Params,
        cursor: Option<Self::Cursor>,
    ) -> std::result::Result<impl Enumerator<Self::Item, Self::Cursor>, JobError> {
        self.job.enumerate(params, cursor)
    }

    async fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: Self::Item,
    ) -> std::result::Result<(), JobError> {
        let copy = item.clone();
        self.job.process(ctx, item).await?;
        let done = {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            items.push(copy);
            items.len()
        };
        if let Some((after, stop)) = &self.stop_after
            && done == *after
            && let Some(shutdown) = stop.get()
        {
            shutdown.cancel();
            // let the run's supervisor see the shutdown before the next item: the
            // run then stops exactly here, checkpoints and releases the job
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn count_items(&self, item: &Self::Item) -> u64 {
        self.job.count_items(item)
    }

    fn total(
        &self,
        params: &Self::Params,
    ) -> impl Future<Output = std::result::Result<Option<u64>, JobError>> + Send {
        self.job.total(params)
    }

    fn throttle(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Option<Duration>> + Send {
        self.job.throttle(ctx)
    }

    fn on_start(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = std::result::Result<(), JobError>> + Send {
        self.job.on_start(ctx)
    }

    fn on_resume(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = std::result::Result<(), JobError>> + Send {
        self.job.on_resume(ctx)
    }

    fn on_interrupt(
        &self,
        ctx: &JobContext<Self::Params>,
        reason: InterruptReason,
    ) -> impl Future<Output = ()> + Send {
        self.job.on_interrupt(ctx, reason)
    }

    fn on_complete(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = std::result::Result<(), JobError>> + Send {
        self.job.on_complete(ctx)
    }

    fn on_error(
        &self,
        ctx: &JobContext<Self::Params>,
        error: &JobError,
    ) -> impl Future<Output = ()> + Send {
        self.job.on_error(ctx, error)
    }

    fn partition(
        &self,
        params: &Self::Params,
        n: u32,
    ) -> impl Future<Output = std::result::Result<Vec<Self::Params>, JobError>> + Send {
        self.job.partition(params, n)
    }

    fn split(
        &self,
        params: &Self::Params,
        cursor: Option<&Self::Cursor>,
    ) -> impl Future<Output = std::result::Result<SplitParams<Self::Params>, JobError>> + Send {
        self.job.split(params, cursor)
    }

    fn settings(&self) -> KindSettings {
        self.job.settings()
    }
}

/// The worker the helpers run: one slot, quick polls, no backpressure signal that
/// timing on a busy test machine could trip.
fn config() -> WorkerConfig {
    let mut config = WorkerConfig {
        concurrency: 1,
        poll_interval: Duration::from_millis(10),
        retention: None,
        dynamic_splitting: false,
        ..WorkerConfig::default()
    };
    config.backpressure.store_latency = None;
    config
}

/// Runs the job's worker until nothing is left to claim.
async fn drain<J>(
    store: &Arc<dyn Store>,
    job: &Arc<J>,
    items: &Arc<Mutex<Vec<J::Item>>>,
    stop_after: Option<usize>,
    queue: &str,
) -> Result<()>
where
    J: Job,
    J::Item: Clone,
{
    let mut config = config();
    config.queues = vec![queue.to_string()];
    let stop = Arc::new(std::sync::OnceLock::new());
    let recorded = Recorded {
        job: Arc::clone(job),
        items: Arc::clone(items),
        stop_after: stop_after.map(|n| (n, Arc::clone(&stop))),
    };
    let worker = Worker::new(Arc::clone(store), Registry::new().with(recorded), config)?;
    let _ = stop.set(worker.shutdown_token());
    worker.run_until_idle().await.map(drop)
}

/// Enqueues the job on `store` in a queue of its own, so nothing else there is
/// claimed.
async fn enqueue<J: Job>(
    store: &Arc<dyn Store>,
    job: &J,
    params: &J::Params,
) -> Result<(JobId, String)> {
    let queue = format!("iterjob-testing-{}", rand::random::<u32>());
    let mut new = NewJob::of(job, params)?;
    new.queue = queue.clone();
    new.max_attempts = 1;
    let id = store.job_insert(&new).await?;
    Ok((id, queue))
}

async fn record(store: &Arc<dyn Store>, id: JobId) -> Result<JobRecord> {
    store.job_get(id).await?.ok_or(Error::JobNotFound(id))
}

/// Runs `job` with `params` to the end on a fresh [`MemoryStore`] and returns the
/// items its `process` received, in order, with the job's final record (its
/// state, progress, last error). A job that fails is returned too, not an error:
/// check `walk.job.state`.
///
/// # Errors
/// When the parameters do not serialize or the worker cannot be built (an invalid
/// [`Job::settings`]).
pub async fn run_to_end<J>(job: J, params: &J::Params) -> Result<Walk<J::Item>>
where
    J: Job,
    J::Item: Clone,
{
    run_to_end_on(Arc::new(MemoryStore::new()), job, params).await
}

/// [`run_to_end`] on the store you give (a real SQLite or PostgreSQL store, for a
/// job that reads it in a transaction). The job runs in a queue of its own.
///
/// # Errors
/// As [`run_to_end`], and when the store fails.
pub async fn run_to_end_on<J>(
    store: Arc<dyn Store>,
    job: J,
    params: &J::Params,
) -> Result<Walk<J::Item>>
where
    J: Job,
    J::Item: Clone,
{
    let job = Arc::new(job);
    let (id, queue) = enqueue(&store, &*job, params).await?;
    let items = Arc::new(Mutex::new(Vec::new()));
    drain(&store, &job, &items, None, &queue).await?;
    let items = std::mem::take(&mut *items.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Walk {
        items,
        job: record(&store, id).await?,
    })
}

/// How many interruption points [`assert_resumes_exactly`] tries: every one for a
/// walk of up to this many items, else this many spread over the walk (the first
/// and last few always among them).
pub const EXHAUSTIVE_UP_TO: usize = 200;

/// Checks resume exactness for your job: runs it to the end once; then, for every
/// number of items `k` (every `k` for up to [`EXHAUSTIVE_UP_TO`] items, else a
/// spread of them), runs it afresh, stops its worker after `k` items as a deploy
/// would (the runtime checkpoints and releases the job), and resumes it on a new
/// worker. Each time, the items processed over both runs must equal the full walk:
/// every item exactly once, in order, and the job completed. Each point costs two
/// short worker runs and a 20 ms pause at the stop (the run's supervisor must see
/// it before the next item), so a long walk takes a few seconds.
///
/// # Panics
/// With a message naming `k` and the first item that differs, when a resumed walk
/// repeats, skips or reorders an item, or the job does not complete.
pub async fn assert_resumes_exactly<J>(job: J, params: &J::Params)
where
    J: Job,
    J::Item: Clone + PartialEq + Debug,
{
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let job = Arc::new(job);
    let full = {
        let (id, queue) = enqueue(&store, &*job, params)
            .await
            .expect("enqueue the job");
        let items = Arc::new(Mutex::new(Vec::new()));
        drain(&store, &job, &items, None, &queue)
            .await
            .expect("run the job to the end");
        let done = record(&store, id).await.expect("read the job");
        assert_eq!(
            done.state,
            JobState::Completed,
            "job kind `{}` did not complete when run without interruption: {:?}",
            J::KIND,
            done.last_error
        );
        items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    };
    for k in interruption_points(full.len()) {
        let (id, queue) = enqueue(&store, &*job, params)
            .await
            .expect("enqueue the job");
        let items = Arc::new(Mutex::new(Vec::new()));
        drain(&store, &job, &items, Some(k), &queue)
            .await
            .expect("run the job until the interruption");
        let first = items.lock().unwrap_or_else(|e| e.into_inner()).len();
        if k > 0 && k < full.len() {
            let stopped = record(&store, id).await.expect("read the job");
            assert!(
                stopped.state == JobState::Queued && first == k,
                "job kind `{}`: asked to stop after {k} items, the run processed {first} and \
                 left the job {}",
                J::KIND,
                stopped.state
            );
        }
        drain(&store, &job, &items, None, &queue)
            .await
            .expect("resume the job");
        let done = record(&store, id).await.expect("read the job");
        let walked = items.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if walked != full {
            let at = walked
                .iter()
                .zip(&full)
                .position(|(a, b)| a != b)
                .unwrap_or(walked.len().min(full.len()));
            panic!(
                "job kind `{}`: interrupted after {k} items ({first} processed before the \
                 stop took effect) and resumed, it did not process every item exactly once, \
                 in order: {} items instead of {}; first difference at position {at}: got \
                 {:?}, expected {:?}",
                J::KIND,
                walked.len(),
                full.len(),
                walked.get(at),
                full.get(at)
            );
        }
        assert_eq!(
            done.state,
            JobState::Completed,
            "job kind `{}`: interrupted after {k} items, the resumed job did not complete: {:?}",
            J::KIND,
            done.last_error
        );
    }
}

/// Where to interrupt a walk of `n` items.
fn interruption_points(n: usize) -> Vec<usize> {
    if n <= EXHAUSTIVE_UP_TO {
        return (0..=n).collect();
    }
    let mut points: Vec<usize> = (0..8).chain(n - 8..=n).collect();
    let middle = EXHAUSTIVE_UP_TO - points.len();
    points.extend((1..=middle).map(|i| i * n / (middle + 1)));
    points.sort_unstable();
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruption_points_cover_small_walks_and_spread_over_long_ones() {
        assert_eq!(interruption_points(3), vec![0, 1, 2, 3]);
        let long = interruption_points(1_000_000);
        assert!(long.len() <= EXHAUSTIVE_UP_TO + 1, "{}", long.len());
        assert_eq!(&long[..3], &[0, 1, 2]);
        assert_eq!(long.last(), Some(&1_000_000));
        assert!(long.windows(2).all(|w| w[0] < w[1]));
    }
}
