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
//! - Stores: [`MemoryStore`] for tests, SQLite (`iterjob-sqlite`) as the embedded
//!   default.
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
//! ## Concepts
//!
//! - [`Job`]: a kind — parameters, cursor, enumerator, work, hooks, [`KindSettings`].
//! - [`enumerator`]: the enumerators in the box and how to write your own.
//! - [`Worker`] and [`WorkerConfig`]: claiming, leases, checkpoints, shutdown.
//! - [`store`]: the storage interface and the job record.
//! - [`Registry`]: the kinds a process knows; parameter validation.

pub mod enumerator;
pub mod error;
pub mod job;
pub mod registry;
pub mod runtime;
pub mod store;

pub use error::{BoxError, Error, JobError, Result, error_chain};
pub use job::{Job, JobContext, KindSettings};
pub use registry::Registry;
pub use runtime::{RunningJob, Worker, WorkerConfig, WorkerReport};
pub use store::{
    InterruptReason, JobEvent, JobEventKind, JobFilter, JobId, JobRecord, JobState, MemoryStore,
    NewJob, Store,
};
pub use tokio_util::sync::CancellationToken;
