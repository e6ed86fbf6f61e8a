//! # iterjob-testkit
//!
//! Test helpers for iterjob, for the stores in this workspace and for your own jobs.
//!
//! - [`resume`]: resume exactness for an enumerator — walk it with interruptions
//!   after every possible number of items (and after random stretches, for property
//!   tests), persisting the cursor through JSON between stretches, and compare with
//!   one uninterrupted walk. Use it on every enumerator you write.
//! - [`conformance`]: the store conformance suite — claim, lease expiry, fencing,
//!   checkpoints, pause/cancel, retries, scheduling, ordering — run by every store
//!   through [`store_conformance!`].
//! - [`scenarios`]: the runtime scenarios — a worker and a real store, checked for
//!   resume exactness across shutdowns, retries from the checkpoint, panics, time
//!   slices, pause/cancel, throttling and bad stored data — run through
//!   [`runtime_scenarios!`].
//! - [`pacing`]: the pacing scenarios — a rate limit shared by several workers,
//!   signals honoured while a run waits for it, adaptive throttling slowing down,
//!   recovering and backing off — run through [`pacing_scenarios!`].
//!
//! ## Checking your own enumerator
//!
//! ```
//! use iterjob::enumerator::{self, EnumeratorExt};
//! use iterjob_testkit::assert_resume_exact;
//!
//! # futures::executor::block_on(async {
//! // interrupting after any number of batches, with any stretches, yields every
//! // item exactly once, in order
//! assert_resume_exact(
//!     |cursor| enumerator::range(0..50, cursor).batched(7),
//!     &[3, 0, 2],
//! )
//! .await;
//! # });
//! ```

pub mod backpressure;
pub mod conformance;
pub mod fairness;
pub mod guarded;
pub mod pacing;
pub mod partitions;
pub mod queues;
pub mod resume;
pub mod scenarios;
pub mod schedules;
pub mod sql;

pub use guarded::Guarded;
pub use resume::{assert_resume_exact, collect_all, walk_with_interruptions};
