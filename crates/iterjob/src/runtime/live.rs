//! Live progress of the jobs a worker is running, for progress bars and dashboards
//! in the same process (the store has the durable view, updated at checkpoints).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::store::{JobId, Progress, RunToken};

const UNKNOWN: u64 = u64::MAX;

/// One running job's counters, updated by its run without locks.
#[derive(Debug)]
pub(crate) struct LiveJob {
    pub(crate) id: JobId,
    pub(crate) kind: String,
    pub(crate) token: RunToken,
    started: Instant,
    items_done: AtomicU64,
    items_total: AtomicU64,
    durable: Mutex<Progress>,
    /// The adaptive throttle's delay between items, in microseconds.
    throttle_delay_us: AtomicU64,
    total_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LiveJob {
    pub(crate) fn new(id: JobId, kind: String, token: RunToken, durable: Progress) -> Self {
        LiveJob {
            id,
            kind,
            token,
            started: Instant::now(),
            items_done: AtomicU64::new(durable.items_done),
            items_total: AtomicU64::new(durable.items_total.unwrap_or(UNKNOWN)),
            durable: Mutex::new(durable),
            throttle_delay_us: AtomicU64::new(0),
            total_task: Mutex::new(None),
        }
    }

    #[inline]
    pub(crate) fn set_items_done(&self, n: u64) {
        self.items_done.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_items_total(&self, n: u64) {
        self.items_total.store(n, Ordering::Relaxed);
    }

    /// Forgets the total (the collection changed: a partition was split).
    pub(crate) fn clear_items_total(&self) {
        self.items_total.store(UNKNOWN, Ordering::Relaxed);
    }

    pub(crate) fn items_total(&self) -> Option<u64> {
        match self.items_total.load(Ordering::Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        }
    }

    pub(crate) fn set_throttle_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.throttle_delay_us.store(us, Ordering::Relaxed);
    }

    pub(crate) fn set_durable(&self, progress: Progress) {
        *self.durable.lock().unwrap_or_else(|e| e.into_inner()) = progress;
    }

    /// The last progress the store accepted.
    pub(crate) fn durable(&self) -> Progress {
        self.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps the task computing the total (aborting one computing an older total).
    pub(crate) fn set_total_task(&self, task: tokio::task::JoinHandle<()>) {
        let old = self
            .total_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    fn snapshot(&self) -> RunningJob {
        let durable = self.durable();
        RunningJob {
            id: self.id,
            kind: self.kind.clone(),
            items_done: self.items_done.load(Ordering::Relaxed),
            items_total: self.items_total(),
            checkpoint_cursor: durable.cursor,
            checkpoint_items_done: durable.items_done,
            running_for: self.started.elapsed(),
            throttle_delay: Duration::from_micros(self.throttle_delay_us.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for LiveJob {
    fn drop(&mut self) {
        if let Some(task) = self.total_task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// A snapshot of one job a worker is running.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningJob {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Items processed so far (live, not yet necessarily checkpointed).
    pub items_done: u64,
    /// Items in the collection, when known.
    pub items_total: Option<u64>,
    /// The cursor of the last checkpoint.
    pub checkpoint_cursor: Option<Value>,
    /// Items done as of the last checkpoint.
    pub checkpoint_items_done: u64,
    /// How long this run has been going.
    pub running_for: Duration,
    /// The delay the adaptive throttle puts between two items right now (zero when
    /// the work is within its target latency, or the kind has no target).
    pub throttle_delay: Duration,
}

/// The set of jobs a worker is running right now.
#[derive(Debug, Default)]
pub(crate) struct LiveJobs {
    jobs: Mutex<BTreeMap<JobId, Arc<LiveJob>>>,
}

impl LiveJobs {
    pub(crate) fn insert(&self, job: Arc<LiveJob>) {
        self.lock().insert(job.id, job);
    }

    pub(crate) fn remove(&self, id: JobId) -> Option<Arc<LiveJob>> {
        self.lock().remove(&id)
    }

    pub(crate) fn all(&self) -> Vec<Arc<LiveJob>> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn snapshot(&self) -> Vec<RunningJob> {
        self.lock().values().map(|j| j.snapshot()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, Arc<LiveJob>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
