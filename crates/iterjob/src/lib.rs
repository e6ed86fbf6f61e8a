//! # iterjob
//!
//! Long-running jobs that can be interrupted and resumed.
//!
//! A job that walks a big collection — every row of a table, every line of a file,
//! every id in a range — is split into **the collection** (an [enumerator] that yields
//! each item with a cursor) and **the work** for one item ([`Job::process`]). The
//! runtime owns the loop: it checkpoints the cursor durably, can stop the job between
//! any two items (deploy, shutdown, pause, time slice, throttle, crash), and resumes it
//! later from the cursor, on any worker.
//!
//! ## Key features
//!
//! - **Resume exactness**: item-granular cursors (an index, a key, a byte offset),
//!   never a batch index; a clean interruption repeats nothing and nothing is skipped.
//! - **Periodic checkpoints** (by time, default every second, and optionally by item
//!   count): a crash loses at most the work since the last one.
//! - **Retries resume from the last checkpoint**, with exponential backoff and jitter;
//!   errors are typed ([`JobError`]: retryable, fatal, retry-after).
//! - **Leases with fencing**: a job whose worker died is claimed again after its lease
//!   expires; the dead worker's late writes are rejected by the run token.
//! - **Fair time slices**, **throttling**, **pause / resume / cancel**, **progress**
//!   (items, total, rate, ETA, interruptions).
//! - **Parallel iteration**: a job enqueued with [`NewJob::partitions`] is split
//!   ([`Job::partition`]) into partitions that any workers walk at once, cut at
//!   quantiles of the data ([`partition`]); idle workers split the partitions with the
//!   most left ([`Job::split`], dynamic splitting), safely against their checkpoints.
//! - **Pacing**: rate limits per kind shared by every worker of every process
//!   ([`RateLimit`]), adaptive throttling on the work's latency
//!   ([`AdaptiveThrottle`]), and a throttle condition on any signal
//!   ([`Job::throttle`]).
//! - **Throttling by default** ([`Backpressure`]): every job backs off, unless its
//!   kind opts out, while an operator's switch is on ([`Store::throttle_on`]), the
//!   store's writes are slow ([`StoreLatency`]), or one of the app's
//!   [`HealthCheck`]s says so — a replica's lag among them.
//! - Stores: [`MemoryStore`] for tests, SQLite (`iterjob-sqlite`) as the embedded
//!   default, PostgreSQL (`iterjob-postgres`) for many workers on many machines.
//!
//! ## Quick start
//!
//! ```no_run
//! use std::sync::Arc;
//! use iterjob::enumerator::{self, Enumerator};
//! use iterjob::{Job, JobContext, JobError, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig};
//! use serde::{Deserialize, Serialize};
//!
//! struct SquareNumbers;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Params { up_to: i64 }
//!
//! impl Job for SquareNumbers {
//!     const KIND: &'static str = "square_numbers";
//!     type Params = Params;
//!     type Cursor = i64;
//!     type Item = i64;
//!
//!     fn enumerate(&self, p: &Params, cursor: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
//!         Ok(enumerator::range(0..p.up_to, cursor))
//!     }
//!
//!     async fn process(&self, _ctx: &JobContext<Params>, n: i64) -> Result<(), JobError> {
//!         println!("{n}² = {}", n * n);
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> iterjob::Result<()> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! store.job_insert(&NewJob::of(&SquareNumbers, &Params { up_to: 1_000 })?).await?;
//! let worker = Worker::new(store, Registry::new().with(SquareNumbers), WorkerConfig::default())?;
//! worker.run_until_idle().await?;
//! # Ok(()) }
//! ```
//!
//! ## Pacing: rate limits, adaptive throttling, throttle conditions
//!
//! Three ways to keep a long job from hurting what it works on, combinable:
//!
//! - [`KindSettings::rate_limit`]: at most N items per second (or minute) for the
//!   kind, over **every worker of every process** sharing the store (the SQLite and
//!   PostgreSQL stores keep the bucket in the database). Batch items count their
//!   length ([`Job::count_items`]).
//! - [`KindSettings::target_latency`]: when the work's latency rises above the
//!   target, the job puts a growing delay between items; when it falls, the delay
//!   shrinks back to zero; past a limit, the run backs off entirely and frees its
//!   worker ([`AdaptiveThrottle`]). The current delay is on
//!   [`RunningJob::throttle_delay`] (the `iterjob worker` status line shows
//!   `throttled: 40 ms/item`).
//! - [`Job::throttle`]: any condition you can compute — replication lag, a queue's
//!   depth, a time window — checked every few items; `Some(backoff)` frees the worker
//!   until then (examples on [`Job::throttle`]).
//!
//! ```
//! use std::time::Duration;
//! use iterjob::{AdaptiveThrottle, KindSettings, RateLimit};
//!
//! let settings = KindSettings::default()
//!     // one API quota for every job that calls it, on every machine
//!     .rate_limit(RateLimit::per_minute(1_200).key("partner-api"))
//!     // and slow down when its answers take over 200 ms; give the worker back
//!     // for 5 minutes when 4 s between calls does not help
//!     .adaptive_throttle(
//!         AdaptiveThrottle::new(Duration::from_millis(200))
//!             .max_delay(Duration::from_secs(4))
//!             .backoff(Duration::from_secs(300)),
//!     );
//! # let _ = settings;
//! ```
//!
//! While a run waits for its rate limit or its adaptive delay it still stops within
//! about 50 ms on shutdown, and honours pause and cancel requests at its next
//! checkpoint tick, as between any two items.
//!
//! ## Throttling by default
//!
//! On top of each kind's own pacing, every job obeys the default backpressure
//! ([`WorkerConfig::backpressure`]) unless its kind opts out with
//! [`KindSettings::backpressure`]`(false)`: the operators' throttle switches kept in
//! the store ([`ThrottleSwitch`], `iterjob throttle on|off`), the latency of the
//! worker's writes to its store against their baseline ([`StoreLatency`]), and the
//! app's health checks ([`HealthCheck`], [`Registry::health_check`]) — such as the
//! replica-lag checks of `iterjob-postgres` and `iterjob-mysql`. A job a signal
//! covers checkpoints and goes back to its queue (an interruption, no attempt used)
//! with the signal as the reason; workers stop claiming what the signals cover. See
//! [`runtime::backpressure`] for the details.
//!
//! ## Concepts
//!
//! - [`Job`]: a kind — parameters, cursor, enumerator, work, hooks, [`KindSettings`].
//! - [`enumerator`]: the enumerators in the box and how to write your own.
//! - [`partition`]: dividing a collection for parallel walks and dynamic splitting.
//! - [`Worker`] and [`WorkerConfig`]: claiming, leases, checkpoints, shutdown.
//! - [`store`]: the storage interface and the job record.
//! - [`Registry`]: the kinds a process knows; parameter validation.

pub mod enumerator;
pub mod error;
pub mod job;
mod otel;
pub mod partition;
pub mod registry;
pub mod runtime;
pub mod schedule;
pub mod steps;
pub mod store;
pub mod testing;

/// Re-exported for implementing [`HealthCheck`] (and [`Store`]) without a direct
/// dependency on the `async-trait` crate.
pub use async_trait::async_trait;
pub use error::{BoxError, Error, JobError, Result, error_chain};
pub use job::{Job, JobContext, KindSettings, PartitionFailure, SplitParams};
pub use registry::{KindInfo, Registry};

/// The JSON Schema of `T`, for [`Job::params_schema`]: the dashboard's tasks page
/// builds its typed parameters form from it. `T`'s doc comments become the
/// fields' help texts, `#[serde(default)]` values are prefilled, enums become
/// selects. Derive `schemars::JsonSchema` (schemars 1.x) on `T`.
#[cfg(feature = "schemars")]
pub fn params_schema<T: schemars::JsonSchema>() -> Option<serde_json::Value> {
    Some(schemars::schema_for!(T).to_value())
}
pub use runtime::{
    AdaptiveThrottle, Backpressure, Health, HealthCheck, LeaseRenewal, LeaseStamp, RateLimit,
    Retention, RunningJob, SignalSource, StoreLatency, ThrottleSignal, Worker, WorkerConfig,
    WorkerReport,
};
pub use store::{
    Failure, InterruptReason, JobEvent, JobEventKind, JobFilter, JobId, JobRecord, JobState,
    MemoryStore, NewJob, Store, ThrottleSwitch,
};
pub use tokio_util::sync::CancellationToken;
