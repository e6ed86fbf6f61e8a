//! The job definition: a kind's parameters, cursor, enumerator, work and hooks.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::enumerator::Enumerator;
use crate::error::JobError;
use crate::runtime::pace::{AdaptiveThrottle, RateLimit};
use crate::store::{InterruptReason, JobId, RunToken};

/// A job kind: the collection (an enumerator built from parameters and a cursor) and
/// the work for one item.
///
/// The runtime owns the loop: it builds the enumerator from the last checkpointed
/// cursor, calls [`Job::process`] for each item, and between any two items may
/// checkpoint, stop and later resume — on this worker or another.
///
/// ```
/// use iterjob::enumerator::{self, Enumerator};
/// use iterjob::{Job, JobContext, JobError};
/// use serde::{Deserialize, Serialize};
///
/// /// Recomputes the checksum of every invoice in an id range.
/// struct RecomputeChecksums;
///
/// #[derive(Serialize, Deserialize)]
/// struct Params {
///     first_id: i64,
///     last_id: i64,
/// }
///
/// impl Job for RecomputeChecksums {
///     const KIND: &'static str = "recompute_checksums";
///     type Params = Params;
///     type Cursor = i64;
///     type Item = i64;
///
///     fn enumerate(
///         &self,
///         params: &Params,
///         cursor: Option<i64>,
///     ) -> Result<impl Enumerator<i64, i64> + 'static, JobError> {
///         Ok(enumerator::range(params.first_id..params.last_id + 1, cursor))
///     }
///
///     async fn process(&self, _ctx: &JobContext<Params>, invoice_id: i64) -> Result<(), JobError> {
///         // load the invoice, recompute, save
///         let _ = invoice_id;
///         Ok(())
///     }
/// }
/// ```
pub trait Job: Send + Sync + Sized + 'static {
    /// The kind's stable name, stored with every job. Renaming it orphans queued jobs.
    const KIND: &'static str;

    /// True when the kind implements [`Job::partition`]: enqueueing a job with
    /// [`NewJob::partitions`](crate::NewJob::partitions) through a [`Registry`](crate::Registry)
    /// (the command line's `enqueue --partitions`) is refused for a kind that leaves
    /// it false, instead of failing when the job first runs. Set it together with
    /// `partition`.
    const PARTITIONABLE: bool = false;

    /// What the kind does, for operators: a sentence or a short paragraph, shown
    /// on the dashboard's tasks page beside the kind's name. Empty by default.
    const DESCRIPTION: &'static str = "";

    /// Parameters, given at enqueue time and stored as JSON.
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The position in the collection, stored as JSON at every checkpoint.
    type Cursor: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// One item of the collection (or one batch, with [`EnumeratorExt::batched`](crate::enumerator::EnumeratorExt::batched)).
    type Item: Send + 'static;

    /// Builds the enumerator from the parameters and the last checkpointed cursor
    /// (`None` on a fresh job). It must yield exactly the items after `cursor`. It
    /// may borrow `self` and `params`; it is dropped at the end of the run.
    fn enumerate(
        &self,
        params: &Self::Params,
        cursor: Option<Self::Cursor>,
    ) -> Result<impl Enumerator<Self::Item, Self::Cursor>, JobError>;

    /// The work for one item. An error ends the run: the runtime checkpoints the
    /// cursor *before* this item and retries (or fails) according to the error.
    fn process(
        &self,
        ctx: &JobContext<Self::Params>,
        item: Self::Item,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// How many records one item stands for in progress counts: 1 by default;
    /// for a batch item, return the batch's length so progress counts records.
    fn count_items(&self, item: &Self::Item) -> u64 {
        let _ = item;
        1
    }

    /// The number of items, for progress and ETA, or `None` if unknown. It runs
    /// beside the iteration (never before it), bounded by
    /// [`KindSettings::total_timeout`], so a slow `COUNT(*)` over a huge table
    /// cannot stall the start: return an estimate when an exact count is costly.
    ///
    /// A partition's total (the items in its part) also drives dynamic
    /// rebalancing: an idle worker asks the running partition with the most items
    /// left to [`split`](Job::split), and a partition without a total is never
    /// asked. The worker says so once in its log for such a kind.
    fn total(
        &self,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Option<u64>, JobError>> + Send {
        let _ = params;
        async { Ok(None) }
    }

    /// The throttle condition, checked between items every
    /// [`KindSettings::throttle_check_every`] items or
    /// [`KindSettings::throttle_check_interval`], whichever comes first. Return
    /// `Some(backoff)` to checkpoint, free the worker and run again after `backoff`
    /// (replication lag too high, a downstream queue too deep, outside a time window).
    /// The run ends interrupted ([`InterruptReason::Throttled`]), which uses up no
    /// attempt. Any signal works; for the work's own latency, and for a rate limit
    /// shared by all workers, see [`KindSettings::target_latency`] and
    /// [`KindSettings::rate_limit`].
    ///
    /// A time window: run only between 01:00 and 05:00 UTC; outside it, give the
    /// worker back until the window opens.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// # use iterjob::enumerator::{self, Enumerator};
    /// use iterjob::{Job, JobContext, JobError};
    ///
    /// struct NightlyCleanup;
    ///
    /// impl Job for NightlyCleanup {
    ///     const KIND: &'static str = "nightly_cleanup";
    ///     # type Params = (); type Cursor = i64; type Item = i64;
    ///     # fn enumerate(&self, _: &(), c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
    ///     #     Ok(enumerator::range(0..1_000_000, c))
    ///     # }
    ///     # async fn process(&self, _: &JobContext<()>, _: i64) -> Result<(), JobError> { Ok(()) }
    ///     // ...
    ///     async fn throttle(&self, _ctx: &JobContext<()>) -> Option<Duration> {
    ///         until_window(SystemTime::now(), 1, 5)
    ///     }
    /// }
    ///
    /// /// `None` inside the window `[from_hour, to_hour)` UTC, else the time until it opens.
    /// fn until_window(now: SystemTime, from_hour: u64, to_hour: u64) -> Option<Duration> {
    ///     let second_of_day = now.duration_since(UNIX_EPOCH).ok()?.as_secs() % 86_400;
    ///     let (from, to) = (from_hour * 3_600, to_hour * 3_600);
    ///     if (from..to).contains(&second_of_day) {
    ///         return None;
    ///     }
    ///     Some(Duration::from_secs((from + 86_400 - second_of_day) % 86_400))
    /// }
    ///
    /// let at = |h: u64| UNIX_EPOCH + Duration::from_secs(h * 3_600);
    /// assert_eq!(until_window(at(2), 1, 5), None);
    /// assert_eq!(until_window(at(6), 1, 5), Some(Duration::from_secs(19 * 3_600)));
    /// ```
    ///
    /// Replication lag, or the depth of a downstream queue: back off while the
    /// replicas (or the consumers) are behind.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # use iterjob::enumerator::{self, Enumerator};
    /// use iterjob::{Job, JobContext, JobError, KindSettings};
    ///
    /// struct Backfill;
    /// # async fn replica_lag() -> Option<Duration> { None }
    /// # async fn pending_messages(_queue: &str) -> Option<u64> { None }
    ///
    /// impl Job for Backfill {
    ///     const KIND: &'static str = "backfill";
    ///     # type Params = (); type Cursor = i64; type Item = i64;
    ///     # fn enumerate(&self, _: &(), c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
    ///     #     Ok(enumerator::range(0..1_000_000, c))
    ///     # }
    ///     # async fn process(&self, _: &JobContext<()>, _: i64) -> Result<(), JobError> { Ok(()) }
    ///     // ...
    ///     async fn throttle(&self, _ctx: &JobContext<()>) -> Option<Duration> {
    ///         // `SELECT now() - pg_last_xact_replay_timestamp()` on a replica, say;
    ///         // an unknown lag counts as too high
    ///         let lag = replica_lag().await.unwrap_or(Duration::MAX);
    ///         if lag > Duration::from_secs(5) {
    ///             return Some(Duration::from_secs(30));
    ///         }
    ///         let depth = pending_messages("search-index").await.unwrap_or(u64::MAX);
    ///         (depth > 10_000).then(|| Duration::from_secs(60))
    ///     }
    ///
    ///     fn settings(&self) -> KindSettings {
    ///         // look every 500 items or every 2 s, whichever comes first
    ///         KindSettings::default().throttle_check(500, Duration::from_secs(2))
    ///     }
    /// }
    /// ```
    fn throttle(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Option<Duration>> + Send {
        let _ = ctx;
        async { None }
    }

    /// Runs once, before the first item of a fresh job.
    fn on_start(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs at the start of every run that resumes from a checkpoint.
    fn on_resume(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs after an interruption was checkpointed.
    fn on_interrupt(
        &self,
        ctx: &JobContext<Self::Params>,
        reason: InterruptReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Runs once the collection is exhausted, before the job is marked completed.
    /// An error here is handled like an error in `process`.
    fn on_complete(
        &self,
        ctx: &JobContext<Self::Params>,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs after an error was checkpointed, whether it will be retried or not.
    fn on_error(
        &self,
        ctx: &JobContext<Self::Params>,
        error: &JobError,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, error);
        async {}
    }

    /// Splits the collection into about `n` partitions, for a job enqueued with
    /// [`NewJob::partitions`](crate::NewJob::partitions): returns one set of parameters
    /// per partition, each selecting a disjoint part of the collection, together
    /// covering all of it. Each becomes a job of this kind (a child of the
    /// partitioned job) that any worker may claim.
    ///
    /// Split by what the data looks like, so partitions hold about the same number of
    /// items: key ranges at quantiles of the key (`Keyset::partition_bounds` in the
    /// store crates), [`partition::int_ranges`](crate::partition::int_ranges) for an
    /// id range, [`partition::file_ranges`](crate::partition::file_ranges) for a file
    /// (records belong to the range they start in). Returning fewer than `n` (a small
    /// collection) is fine; an empty list completes the job at once.
    ///
    /// The default refuses: the kind cannot be partitioned. Implementing it, set
    /// [`Job::PARTITIONABLE`] to true.
    fn partition(
        &self,
        params: &Self::Params,
        n: u32,
    ) -> impl Future<Output = Result<Vec<Self::Params>, JobError>> + Send {
        let _ = (params, n);
        async {
            Err(JobError::fatal(format!(
                "job kind `{}` cannot be split into partitions: implement `Job::partition` \
                 (and `Job::split`) for it, or enqueue the job without partitions",
                Self::KIND
            )))
        }
    }

    /// Divides what is left of a running partition after `cursor` in two, for dynamic
    /// rebalancing: when workers are idle, the runtime asks the partition with the
    /// most items left to give half of its rest to a new partition. Return
    /// `(keep, give)`: `keep` selects the items before `cursor` and the first part of
    /// the rest (the partition goes on with it from `cursor`), `give` selects the
    /// second part; together exactly this partition's items. `None` when the rest is
    /// too small to divide.
    ///
    /// The runtime calls it between two items, checkpoints `cursor` and stores `keep`
    /// in one fenced write, then rebuilds the enumerator from `keep` and `cursor`, so
    /// no item is lost or walked twice. The default never splits.
    fn split(
        &self,
        params: &Self::Params,
        cursor: Option<&Self::Cursor>,
    ) -> impl Future<Output = Result<SplitParams<Self::Params>, JobError>> + Send {
        let _ = (params, cursor);
        async { Ok(None) }
    }

    /// The JSON Schema of [`Job::Params`], from which the dashboard's tasks page
    /// builds a typed form: a field per property, defaults prefilled, enums as
    /// selects, each field's problem shown next to it. `None` (the default): the
    /// page takes the parameters as JSON. With the `schemars` feature (on by
    /// default) derive it from the type:
    ///
    /// ```
    /// # #[cfg(feature = "schemars")] {
    /// # use iterjob::enumerator::{self, Enumerator};
    /// # use iterjob::{Job, JobContext, JobError};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// struct Params {
    ///     /// First invoice id, inclusive.
    ///     first_id: i64,
    ///     /// Rows per batch.
    ///     #[serde(default = "default_batch")]
    ///     batch: u32,
    /// }
    /// fn default_batch() -> u32 { 100 }
    ///
    /// struct Recompute;
    /// impl Job for Recompute {
    ///     const KIND: &'static str = "recompute";
    ///     const DESCRIPTION: &'static str = "Recomputes invoice checksums from an id on.";
    ///     type Params = Params;
    /// #   type Cursor = i64; type Item = i64;
    /// #   fn enumerate(&self, p: &Params, c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
    /// #       Ok(enumerator::range(p.first_id..p.first_id + 10, c))
    /// #   }
    /// #   async fn process(&self, _: &JobContext<Params>, _: i64) -> Result<(), JobError> { Ok(()) }
    ///     fn params_schema() -> Option<serde_json::Value> {
    ///         iterjob::params_schema::<Params>()
    ///     }
    /// }
    /// let schema = Recompute::params_schema().unwrap();
    /// assert_eq!(schema["properties"]["batch"]["default"], 100);
    /// # }
    /// ```
    ///
    /// The schema only shapes the form: what is enqueued is still checked by
    /// deserializing into `Params`.
    fn params_schema() -> Option<serde_json::Value> {
        None
    }

    /// Per-kind settings; the worker's configuration fills in what is `None`.
    fn settings(&self) -> KindSettings {
        KindSettings::default()
    }
}

/// What [`Job::split`] returns: `Some((keep, give))`, the parameters the running
/// partition goes on with and those of the new partition, or `None` (nothing to give).
pub type SplitParams<P> = Option<(P, P)>;

/// What happens to the other partitions of a partitioned job when one of them fails
/// for good (a fatal error, or its attempts used up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartitionFailure {
    /// The others go on; the parent fails once they are done, naming the failed
    /// partitions, and `retry` of the parent runs those again from their checkpoints.
    /// Nothing finished is thrown away. The default.
    #[default]
    Continue,
    /// The others are cancelled at their next item boundary (after a checkpoint);
    /// `retry` of the parent resumes them all.
    CancelOthers,
}

/// What a job's code can see of the run it is part of.
#[derive(Debug)]
pub struct JobContext<P> {
    /// The job's parameters.
    pub params: P,
    /// The job's id.
    pub job_id: JobId,
    /// Attempts used before this run (0 on the first).
    pub attempt: u32,
    /// This run's number (1 on the first).
    pub run: u32,
    /// The queue the job came from.
    pub queue: String,
    /// This run's fencing token: a write for this run (such as a checkpoint made in
    /// the same transaction as the work) must present it.
    pub run_token: RunToken,
    /// How long this run's lease lasts from a renewal. Besides the worker's
    /// heartbeats, a write made for this run in the store's database renews it
    /// (`Transactional`'s in-transaction checkpoint does): a job whose own item
    /// transactions hold the database's write lock (SQLite) keeps its lease through
    /// them even when a heartbeat has to wait.
    pub lease: std::time::Duration,
    /// Tells the run when such a write renewed its lease (detached by default, for
    /// a context built by hand in a test).
    pub lease_renewal: crate::LeaseRenewal,
}

/// Per-kind settings. `None` fields take the worker's defaults.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct KindSettings {
    /// Time slice: after this long the job checkpoints, goes to the back of its queue
    /// and frees the worker. Worker default: 5 minutes.
    pub max_runtime: Option<Duration>,
    /// Checkpoint at least this often. Worker default: 1 second.
    pub checkpoint_interval: Option<Duration>,
    /// Also checkpoint every this many items. Worker default: none (time only).
    pub checkpoint_every: Option<u64>,
    /// Attempts for jobs of this kind when the enqueuer does not say.
    pub max_attempts: Option<u32>,
    /// Check [`Job::throttle`] every this many items. Default: 100.
    pub throttle_check_every: Option<u64>,
    /// Check [`Job::throttle`] at least this often. Default: 1 second.
    pub throttle_check_interval: Option<Duration>,
    /// Time limit on [`Job::total`]. Default: 10 seconds.
    pub total_timeout: Option<Duration>,
    /// Queue for jobs of this kind when the enqueuer does not say. Default: `default`.
    pub queue: Option<String>,
    /// What a failed partition does to its siblings. Default: [`PartitionFailure::Continue`].
    pub partition_failure: PartitionFailure,
    /// A rate limit on the kind's items, shared by all workers through the store.
    /// Default: none.
    pub rate_limit: Option<RateLimit>,
    /// Adaptive throttling on the work's latency. Default: none.
    pub adaptive_throttle: Option<AdaptiveThrottle>,
    /// Whether the kind obeys the default backpressure ([`Backpressure`](crate::Backpressure):
    /// the operators' throttle switches, the store's latency, the app's health
    /// checks). Default (`None`): it does.
    pub backpressure: Option<bool>,
}

impl KindSettings {
    /// Sets the time slice.
    pub fn max_runtime(mut self, d: Duration) -> Self {
        self.max_runtime = Some(d);
        self
    }

    /// Sets the checkpoint interval.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = Some(d);
        self
    }

    /// Also checkpoints every `n` items.
    pub fn checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = Some(n);
        self
    }

    /// Sets the default attempt budget.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Sets how often the throttle condition is checked.
    pub fn throttle_check(mut self, every_items: u64, interval: Duration) -> Self {
        self.throttle_check_every = Some(every_items);
        self.throttle_check_interval = Some(interval);
        self
    }

    /// Sets the time limit on [`Job::total`].
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.total_timeout = Some(d);
        self
    }

    /// Sets the default queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets what a failed partition does to its siblings.
    pub fn partition_failure(mut self, policy: PartitionFailure) -> Self {
        self.partition_failure = policy;
        self
    }

    /// Limits the kind's items per second or per minute, over every worker of every
    /// process sharing the store (see [`RateLimit`]).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Slows the job down while its work takes longer than `target` per call of
    /// [`Job::process`], and gives the worker back when that does not help (see
    /// [`AdaptiveThrottle`], whose defaults this uses).
    pub fn target_latency(self, target: Duration) -> Self {
        self.adaptive_throttle(AdaptiveThrottle::new(target))
    }

    /// Adaptive throttling with every knob (see [`AdaptiveThrottle`]).
    pub fn adaptive_throttle(mut self, throttle: AdaptiveThrottle) -> Self {
        self.adaptive_throttle = Some(throttle);
        self
    }

    /// Opts the kind out of the default backpressure (`false`), or back in: a kind
    /// that must keep running whatever the store, the replicas or the operator's
    /// throttle switch say — the job that drains the backlog an incident is about,
    /// a health probe. Its own [`Job::throttle`], rate limit and adaptive throttle
    /// still apply; queue pauses too.
    ///
    /// ```
    /// use iterjob::KindSettings;
    /// let settings = KindSettings::default().backpressure(false);
    /// assert_eq!(settings.backpressure, Some(false));
    /// ```
    pub fn backpressure(mut self, obey: bool) -> Self {
        self.backpressure = Some(obey);
        self
    }
}
