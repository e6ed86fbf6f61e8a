//! Stop and checkpoint signals between a run's loop and its supervisor task.
//!
//! The loop checks one atomic word per item (a relaxed load, about a nanosecond);
//! the supervisor — timers, heartbeats, the worker's shutdown — raises bits in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::runtime::controls::ControlsWatch;
use crate::runtime::release::{Releaser, Retrying};
use crate::store::{JobId, RunToken, Store};

pub(crate) const CHECKPOINT: u32 = 1;
pub(crate) const THROTTLE: u32 = 1 << 1;
pub(crate) const SHUTDOWN: u32 = 1 << 2;
pub(crate) const TIME_SLICE: u32 = 1 << 3;
pub(crate) const PAUSE: u32 = 1 << 4;
pub(crate) const CANCEL: u32 = 1 << 5;
pub(crate) const LEASE_LOST: u32 = 1 << 6;
pub(crate) const SPLIT: u32 = 1 << 7;
/// The lease could not be renewed and would expire before the next heartbeat: stop
/// at the next item and hand the job back (a fenced release, no attempt used).
pub(crate) const LEASE_EXPIRING: u32 = 1 << 8;
/// An operator paused the job's queue (interrupting its runs): stop at the next
/// item and go back to the queue.
pub(crate) const QUEUE_PAUSED: u32 = 1 << 9;
/// Look at the default backpressure's signals (raised by the run itself before its
/// first item; [`THROTTLE`] looks at them too).
pub(crate) const BACKPRESSURE: u32 = 1 << 10;

/// The signal word shared by a run's loop and its supervisor.
#[derive(Debug)]
pub(crate) struct Signals {
    flags: AtomicU32,
    origin: Instant,
    /// Milliseconds after `origin` at which the lease was last renewed.
    renewed_ms: AtomicU64,
}

impl Signals {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Signals {
            flags: AtomicU32::new(0),
            origin: Instant::now(),
            renewed_ms: AtomicU64::new(0),
        })
    }

    pub(crate) fn raise(&self, bits: u32) {
        self.flags.fetch_or(bits, Ordering::Release);
    }

    /// Returns and clears the raised bits; one relaxed load when none are raised.
    #[inline]
    pub(crate) fn take(&self) -> u32 {
        if self.flags.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.flags.swap(0, Ordering::Acquire)
        }
    }

    /// A point in time for [`Signals::renewed_at`]: take it *before* sending a
    /// write that renews the lease, since the store stamps the renewal somewhere
    /// between sending and the answer.
    pub(crate) fn stamp(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Records that the store accepted a lease-renewing write sent at `sent`.
    pub(crate) fn renewed_at(&self, sent: u64) {
        self.renewed_ms.fetch_max(sent, Ordering::Relaxed);
    }

    pub(crate) fn since_renewal(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.renewed_ms.load(Ordering::Relaxed)))
    }
}

/// How a write of the job's own that renews the run's lease (an in-transaction
/// checkpoint: see [`JobContext::lease`](crate::JobContext::lease)) tells the run, so
/// that a heartbeat waiting behind the job's own transactions is not taken for a
/// lost lease. A default (detached) handle does nothing.
#[derive(Clone, Default)]
pub struct LeaseRenewal {
    signals: Option<Arc<Signals>>,
}

/// When a lease-renewing write was sent, from [`LeaseRenewal::stamp`].
#[derive(Clone, Copy, Debug)]
pub struct LeaseStamp(u64);

impl LeaseRenewal {
    pub(crate) fn new(signals: Arc<Signals>) -> Self {
        LeaseRenewal {
            signals: Some(signals),
        }
    }

    /// Take this just before sending the write that renews the lease.
    pub fn stamp(&self) -> LeaseStamp {
        LeaseStamp(self.signals.as_ref().map_or(0, |s| s.stamp()))
    }

    /// The write sent at `sent` renewed the lease (it committed).
    pub fn renewed(&self, sent: LeaseStamp) {
        if let Some(signals) = &self.signals {
            signals.renewed_at(sent.0);
        }
    }
}

impl std::fmt::Debug for LeaseRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRenewal")
            .field("attached", &self.signals.is_some())
            .finish()
    }
}

/// What one heartbeat found.
enum Beat {
    /// Renewed, or failed with time left to try again.
    Renewed,
    /// Another run holds the job now (fenced).
    Lost,
    /// Not renewed, and the lease would expire before the next heartbeat.
    Expiring,
}

/// Timers and heartbeats of one run.
pub(crate) struct Supervisor {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) job: JobId,
    pub(crate) token: RunToken,
    pub(crate) lease: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) throttle_interval: Duration,
    pub(crate) max_runtime: Duration,
    pub(crate) shutdown: CancellationToken,
    pub(crate) signals: Arc<Signals>,
    /// The worker's releaser, to mark this run's lease at risk.
    pub(crate) releaser: Releaser,
    /// The job's queue, and the operators' switches as the worker reads them.
    pub(crate) queue: String,
    pub(crate) controls: ControlsWatch,
}

impl Supervisor {
    /// Runs until `done` is cancelled or the lease is lost. When it stops because
    /// the lease could not be renewed, it returns the guard that keeps this worker's
    /// rescuer from taking the job for dead while the run is still alive: the
    /// task's output is held until the run joins it, at its very end.
    pub(crate) async fn run(mut self, done: CancellationToken) -> Option<Retrying> {
        let start = Instant::now();
        // a job claimed just before its queue was paused stops at its first item
        let mut watching = true;
        if self.controls.borrow_and_update().interrupts(&self.queue) {
            self.signals.raise(QUEUE_PAUSED);
        }
        let mut heartbeat = interval_at(start + self.heartbeat_interval, self.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut checkpoint =
            interval_at(start + self.checkpoint_interval, self.checkpoint_interval);
        checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut throttle = interval_at(start + self.throttle_interval, self.throttle_interval);
        throttle.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let slice_end = start + self.max_runtime;
        let mut slice_over = false;
        let mut shutdown_seen = false;
        loop {
            tokio::select! {
                biased;
                _ = done.cancelled() => return None,
                _ = self.shutdown.cancelled(), if !shutdown_seen => {
                    shutdown_seen = true;
                    self.signals.raise(SHUTDOWN);
                }
                _ = sleep_until(slice_end), if !slice_over => {
                    slice_over = true;
                    self.signals.raise(TIME_SLICE);
                }
                _ = heartbeat.tick() => {
                    match self.beat().await {
                        Beat::Renewed => {}
                        Beat::Lost => return None,
                        Beat::Expiring => return Some(self.releaser.retry_guard()),
                    }
                }
                _ = checkpoint.tick() => self.signals.raise(CHECKPOINT),
                _ = throttle.tick() => self.signals.raise(THROTTLE),
                changed = self.controls.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                    } else if self.controls.borrow_and_update().interrupts(&self.queue) {
                        self.signals.raise(QUEUE_PAUSED);
                    }
                }
            }
        }
    }

    /// One heartbeat.
    async fn beat(&self) -> Beat {
        // A store that hangs (a pool waiting for a server that is down) must not
        // keep this run working past the lease it can no longer renew: wait at most
        // until the lease we hold would expire (by our own, conservative, clock).
        let margin = (self.lease / 20).max(Duration::from_millis(5));
        let budget = self
            .lease
            .saturating_sub(self.signals.since_renewal() + margin)
            .max(Duration::from_millis(1));
        let sent = self.signals.stamp();
        let beat = tokio::time::timeout(
            budget,
            self.store.job_heartbeat(self.job, self.token, self.lease),
        );
        tokio::pin!(beat);
        // A heartbeat that waits (on SQLite, behind a write lock the job's own items
        // take between checkpoints) asks the run to renew the lease itself between
        // two items, where its own transactions are not in the way.
        let nudge = tokio::time::sleep(self.heartbeat_interval.min(budget / 2));
        tokio::pin!(nudge);
        let mut nudged = false;
        let result = loop {
            tokio::select! {
                result = &mut beat => break result,
                _ = &mut nudge, if !nudged => {
                    nudged = true;
                    self.signals.raise(CHECKPOINT);
                }
            }
        };
        let result = match result {
            Ok(result) => result,
            Err(_) => Err(Error::Backend(
                format!("heartbeat timed out after {budget:?}").into(),
            )),
        };
        match result {
            Ok(control) => {
                self.signals.renewed_at(sent);
                if control.cancel_requested {
                    self.signals.raise(CANCEL);
                } else if control.pause_requested {
                    self.signals.raise(PAUSE);
                } else if control.split_requested {
                    self.signals.raise(SPLIT);
                }
                Beat::Renewed
            }
            Err(Error::LeaseLost { .. }) => {
                tracing::warn!(
                    job = self.job,
                    "lease lost; stopping without further writes"
                );
                self.signals.raise(LEASE_LOST);
                Beat::Lost
            }
            Err(error) => {
                // The store is unreachable: keep working while the lease we hold is
                // still ours, stop before it can have expired.
                let idle = self.signals.since_renewal();
                tracing::warn!(job = self.job, %error, ?idle, "heartbeat failed");
                if idle + self.heartbeat_interval + margin >= self.lease {
                    // The lease cannot be renewed in time: the run stops at the next
                    // item and releases the job (fenced by the run token, so a job
                    // already rescued is left alone), an interruption, no attempt.
                    tracing::warn!(
                        job = self.job,
                        "lease cannot be renewed in time; handing the job back"
                    );
                    self.signals.raise(LEASE_EXPIRING);
                    return Beat::Expiring;
                }
                // try renewing between two items meanwhile
                self.signals.raise(CHECKPOINT);
                Beat::Renewed
            }
        }
    }
}
