//! The runtime: a [`Worker`] claims jobs from a store and runs each one's loop,
//! checkpointing, heartbeating and stopping between items when asked to.

mod backoff;
pub mod backpressure;
mod controls;
pub(crate) mod live;
pub(crate) mod pace;
mod panics;
mod presence;
mod release;
mod retention;
pub(crate) mod run;
mod scheduler;
mod signals;
mod slots;
mod telemetry;
mod worker;

pub use backpressure::{
    Backpressure, Health, HealthCheck, SignalSource, StoreLatency, ThrottleSignal,
};
pub use live::RunningJob;
pub use pace::{AdaptiveThrottle, RateLimit};
pub use retention::Retention;
pub use signals::{LeaseRenewal, LeaseStamp};
pub use worker::{Worker, WorkerReport};

use std::time::Duration;

use crate::error::{Error, Result};
use crate::job::{KindSettings, PartitionFailure};
use crate::store::{DEFAULT_QUEUE, InterruptReason, Outcome};

/// A worker's configuration. Every field has a production-ready default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Identifies this worker in job records. Default: `host:pid:random`.
    pub worker_id: String,
    /// Queues to take jobs from. Default: `["default"]`.
    pub queues: Vec<String>,
    /// Jobs run at once. Default: 4.
    pub concurrency: usize,
    /// How often to look for jobs when idle. Default: 500 ms.
    pub poll_interval: Duration,
    /// Lease length: a job whose worker is silent this long is claimed again. Default: 30 s.
    pub lease: Duration,
    /// How often a running job renews its lease and reads pause/cancel requests. Default: 5 s.
    pub heartbeat_interval: Duration,
    /// Checkpoint at least this often. Default: 1 s.
    pub checkpoint_interval: Duration,
    /// Also checkpoint every this many items. Default: none (time only).
    pub checkpoint_every: Option<u64>,
    /// Time slice per run, unless the kind overrides it. Default: 5 min.
    pub max_runtime: Duration,
    /// On shutdown, how long running jobs get to reach an item boundary before they
    /// are stopped and released at their last checkpoint. Default: 30 s.
    pub shutdown_timeout: Duration,
    /// First retry delay; doubles with each attempt, with jitter. Default: 1 s.
    pub retry_base: Duration,
    /// Longest retry delay. Default: 1 h.
    pub retry_max: Duration,
    /// A job whose worker lost its lease this many times in a row without progress
    /// fails (it is probably crashing its worker). Default: 3.
    pub max_crashes: u32,
    /// How often to requeue jobs whose lease expired. Default: 5 s.
    pub rescue_interval: Duration,
    /// Dynamic splitting: when this worker has a free slot and nothing to claim, it
    /// asks the running partition (of a partitioned job it can run) with the most
    /// items left to give half of its rest to a new partition. Default: on.
    pub dynamic_splitting: bool,
    /// Only partitions with at least this many items left are split. Default: 1000.
    pub split_min_remaining: u64,
    /// Jobs claimed ahead of the free slots and held ready, so a slot that frees
    /// starts its next job at once instead of waiting for a claim: the least held
    /// while runs are short (0: never claim ahead). Default: 4.
    ///
    /// It applies only while the worker's runs are short (averaging under a tenth
    /// of the heartbeat interval: one-item jobs, small batches), where a claim round
    /// trip per job would cost as much as the job; a worker of long runs claims for
    /// its free slots only, and leaves the rest of the queue to other workers. When
    /// runs are much shorter than a claim, the worker holds more than this: what its
    /// slots finish in two claim round trips, up to 16 per slot, so one-item jobs
    /// are claimed (and their releases written) a hundred or so at a time. A
    /// prefetched job is leased like a running one. One that waits for a slot longer
    /// than eight times what the jobs ahead of it should take (at least 100 ms, at
    /// most the heartbeat interval) is given back to its queue, runnable at once by
    /// any worker with a free slot (a time-slice interruption), and claiming ahead
    /// stops until runs are short again; all of them go back at shutdown. While runs
    /// hold their slot for less than a claim's round trip, a claim also asks for the
    /// slots working now, which will be free by the time it returns.
    pub prefetch: usize,
    /// How often the worker reads the operators' switches from the store (paused
    /// queues, [`Store::queue_pause`](crate::store::Store::queue_pause); throttle
    /// switches, [`Store::throttle_on`](crate::store::Store::throttle_on)) and runs
    /// the app's [`HealthCheck`]s: small queries per worker, after which a pause reaches every run of the queue at its
    /// next item. Also how often a worker whose registry has schedules looks for
    /// ticks that came due ([`crate::schedule`]). Default: 1 s.
    pub control_interval: Duration,
    /// Retention: finished jobs older than their state's age are deleted, with their
    /// partitions and history, by one worker at a time across every process of the
    /// store. Default: [`Retention::default`] (completed and cancelled after 7
    /// days, failed after 30). `None`: this worker never deletes (others may).
    pub retention: Option<Retention>,
    /// The default backpressure every job obeys unless its kind opts out: the
    /// operators' throttle switches, the store's latency, the app's health checks
    /// (see [`Backpressure`]). Default: [`Backpressure::default`].
    pub backpressure: Backpressure,
    /// How often the worker records that it is alive, with the slots it uses
    /// ([`Store::worker_beat`](crate::store::Store::worker_beat): the dashboard's
    /// workers list, where a worker silent for three of these shows as silent):
    /// one small write per worker each time. Default: 5 s.
    pub presence_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            queues: vec![DEFAULT_QUEUE.to_string()],
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_every: None,
            max_runtime: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            max_crashes: 3,
            rescue_interval: Duration::from_secs(5),
            dynamic_splitting: true,
            split_min_remaining: 1000,
            prefetch: 4,
            control_interval: Duration::from_secs(1),
            retention: Some(Retention::default()),
            backpressure: Backpressure::default(),
            presence_interval: Duration::from_secs(5),
        }
    }
}

impl WorkerConfig {
    /// Checks that the values make sense together; the error says which does not.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        if self.concurrency > 10_000 {
            return bad(format!(
                "concurrency {} is absurd; use at most 10000",
                self.concurrency
            ));
        }
        if self.queues.is_empty() {
            return bad("a worker needs at least one queue".into());
        }
        for (name, d) in [
            ("poll interval", self.poll_interval),
            ("lease", self.lease),
            ("heartbeat interval", self.heartbeat_interval),
            ("presence interval", self.presence_interval),
            ("checkpoint interval", self.checkpoint_interval),
            ("max runtime", self.max_runtime),
            ("rescue interval", self.rescue_interval),
            ("control interval", self.control_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.heartbeat_interval >= self.lease {
            return bad(format!(
                "heartbeat interval ({:?}) must be shorter than the lease ({:?}), or leases expire between heartbeats",
                self.heartbeat_interval, self.lease
            ));
        }
        if self.checkpoint_every == Some(0) {
            return bad("checkpoint every 0 items makes no sense; use at least 1".into());
        }
        if self.prefetch > 10_000 {
            return bad(format!(
                "prefetch {} is absurd; use at most 10000 (or 0 to turn it off)",
                self.prefetch
            ));
        }
        if let Some(latency) = &self.backpressure.store_latency
            && !(latency.factor.is_finite() && latency.factor > 1.0)
        {
            return bad(format!(
                "a store latency factor of {} would call the store slow at its usual speed; \
                 give a factor above 1 (4 is the default), or turn the signal off",
                latency.factor
            ));
        }
        if self.backpressure.backoff.is_zero() {
            return bad(
                "a backpressure backoff of zero would claim throttled jobs again at once; \
                 give a positive backoff (5 s is the default)"
                    .into(),
            );
        }
        if self.backpressure.check_timeout.is_zero() {
            return bad("the health check timeout must be greater than zero".into());
        }
        if self.max_crashes == 0 {
            return bad("max crashes must be at least 1".into());
        }
        if let Some(r) = &self.retention {
            if r.interval.is_zero() {
                return bad("the retention interval must be greater than zero".into());
            }
            if r.batch == 0 || r.batch > 10_000 {
                return bad(format!(
                    "a retention batch of {} jobs makes no sense; use 1 to 10000",
                    r.batch
                ));
            }
        }
        Ok(())
    }

    /// Settings for one kind: the kind's own, falling back to this configuration.
    pub(crate) fn resolve(&self, kind: &KindSettings) -> ResolvedSettings {
        ResolvedSettings {
            lease: self.lease,
            heartbeat_interval: self.heartbeat_interval,
            checkpoint_interval: kind.checkpoint_interval.unwrap_or(self.checkpoint_interval),
            checkpoint_every: kind.checkpoint_every.or(self.checkpoint_every),
            max_runtime: kind.max_runtime.unwrap_or(self.max_runtime),
            throttle_check_every: kind.throttle_check_every.unwrap_or(100).max(1),
            throttle_check_interval: kind
                .throttle_check_interval
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(1)),
            total_timeout: kind.total_timeout.unwrap_or(Duration::from_secs(10)),
            retry_base: self.retry_base,
            retry_max: self.retry_max,
            partition_failure: kind.partition_failure,
            backpressure: kind.backpressure.unwrap_or(true),
            backpressure_backoff: self.backpressure.backoff,
        }
    }
}

fn default_worker_id() -> String {
    let host = crate::store::host_name();
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The settings one run goes by.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedSettings {
    pub(crate) lease: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) checkpoint_every: Option<u64>,
    pub(crate) max_runtime: Duration,
    pub(crate) throttle_check_every: u64,
    pub(crate) throttle_check_interval: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) partition_failure: PartitionFailure,
    /// Whether the kind obeys the default backpressure.
    pub(crate) backpressure: bool,
    pub(crate) backpressure_backoff: Duration,
}

/// How a run ended, from the worker's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunEnd {
    Completed,
    Interrupted(InterruptReason),
    Paused,
    Cancelled,
    Retrying,
    Failed,
    /// The run split a partitioned job into its partitions.
    Partitioned,
    /// Another worker owns the job now; nothing was written.
    LeaseLost,
    /// The store refused the release repeatedly; the lease will expire.
    ReleaseFailed,
}

impl RunEnd {
    pub(crate) fn from_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Completed => RunEnd::Completed,
            Outcome::Interrupted { reason, .. } => RunEnd::Interrupted(*reason),
            Outcome::Paused => RunEnd::Paused,
            Outcome::Cancelled => RunEnd::Cancelled,
            Outcome::Retry { .. } => RunEnd::Retrying,
            Outcome::Failed { .. } => RunEnd::Failed,
        }
    }
}
