//! The worker: claims jobs, runs them concurrently, rescues expired leases, and
//! shuts down gracefully.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::registry::Registry;
use crate::runtime::live::{LiveJob, LiveJobs, RunningJob};
use crate::runtime::run::{RunEnv, RunReport, panic_message};
use crate::runtime::{RunEnd, WorkerConfig, telemetry};
use crate::store::{
    ClaimRequest, Claimed, InterruptReason, JobId, Outcome, Progress, SplitRequest, Store,
};

/// Claims jobs of its registered kinds from a store and runs them.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn iterjob::Store>, registry: iterjob::Registry) -> iterjob::Result<()> {
/// use iterjob::{Worker, WorkerConfig};
///
/// let worker = Worker::new(store, registry, WorkerConfig::default())?;
/// let shutdown = worker.shutdown_token();
/// tokio::spawn(async move {
///     tokio::signal::ctrl_c().await.ok();
///     shutdown.cancel(); // running jobs checkpoint and are released
/// });
/// let report = worker.run().await?;
/// println!("{} runs, {} completed", report.runs, report.completed);
/// # Ok(()) }
/// ```
pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    config: WorkerConfig,
    shutdown: CancellationToken,
    live: Arc<LiveJobs>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("registry", &self.registry)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a worker did, counted by how each run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Runs started.
    pub runs: u64,
    /// Items processed, over all runs.
    pub items: u64,
    /// Runs that completed their job.
    pub completed: u64,
    /// Runs interrupted (shutdown, time slice, throttle).
    pub interrupted: u64,
    /// Runs that ended paused.
    pub paused: u64,
    /// Runs that ended cancelled.
    pub cancelled: u64,
    /// Runs that ended in an error to be retried.
    pub retried: u64,
    /// Runs that ended with the job failed.
    pub failed: u64,
    /// Runs that found their lease lost (nothing written after that).
    pub lease_lost: u64,
    /// Runs stopped at the shutdown deadline and released at their last checkpoint.
    pub aborted: u64,
    /// Runs that split a partitioned job into its partitions.
    pub partitioned: u64,
    /// Times this worker, idle, asked a running partition to split.
    pub split_requests: u64,
}

impl WorkerReport {
    fn count(&mut self, report: &RunReport) {
        self.items += report.items;
        match report.end {
            RunEnd::Completed => self.completed += 1,
            RunEnd::Interrupted(_) => self.interrupted += 1,
            RunEnd::Paused => self.paused += 1,
            RunEnd::Cancelled => self.cancelled += 1,
            RunEnd::Retrying => self.retried += 1,
            RunEnd::Failed => self.failed += 1,
            RunEnd::Partitioned => self.partitioned += 1,
            RunEnd::LeaseLost | RunEnd::ReleaseFailed => self.lease_lost += 1,
        }
    }
}

impl Worker {
    /// A worker over `store` for the kinds in `registry`. Fails if the
    /// configuration, or a kind's settings, are invalid.
    pub fn new(store: Arc<dyn Store>, registry: Registry, config: WorkerConfig) -> Result<Self> {
        config.validate()?;
        registry.validate()?;
        Ok(Worker {
            store,
            registry: Arc::new(registry),
            config,
            shutdown: CancellationToken::new(),
            live: Arc::default(),
        })
    }

    /// The token that stops this worker: cancel it and [`Worker::run`] stops
    /// claiming, lets each running job reach an item boundary, checkpoint and be
    /// released (up to the shutdown timeout), then returns.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The jobs running right now, with live counters.
    pub fn running(&self) -> Vec<RunningJob> {
        self.live.snapshot()
    }

    /// The kinds this worker runs.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.registry.kinds()
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Runs until the shutdown token is cancelled.
    pub async fn run(&self) -> Result<WorkerReport> {
        self.run_loop(false).await
    }

    /// Runs until no job can be claimed and none is running (jobs scheduled for
    /// later are left), or until the shutdown token is cancelled.
    pub async fn run_until_idle(&self) -> Result<WorkerReport> {
        self.run_loop(true).await
    }

    async fn run_loop(&self, until_idle: bool) -> Result<WorkerReport> {
        let mut report = WorkerReport::default();
        let mut tasks: JoinSet<(JobId, RunReport)> = JoinSet::new();
        let mut last_rescue: Option<Instant> = None;
        let mut last_split_request: Option<Instant> = None;
        let split_request_interval = self.config.poll_interval.max(Duration::from_secs(1));
        let mut store_backoff = Duration::ZERO;
        let kinds: Vec<String> = self
            .registry
            .kinds()
            .iter()
            .map(|k| k.to_string())
            .collect();
        tracing::info!(worker = %self.config.worker_id, kinds = ?kinds, queues = ?self.config.queues, "worker started");

        while !self.shutdown.is_cancelled() {
            if last_rescue.is_none_or(|t| t.elapsed() >= self.config.rescue_interval) {
                match self.store.job_rescue_expired(self.config.max_crashes).await {
                    Ok(rescued) => {
                        for r in rescued {
                            tracing::warn!(job = r.id, state = %r.state, "rescued a job whose lease expired");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "rescuing expired leases failed"),
                }
                last_rescue = Some(Instant::now());
            }

            let free = self.config.concurrency.saturating_sub(tasks.len());
            let mut claimed_any = false;
            if free > 0 && !kinds.is_empty() {
                let request = ClaimRequest {
                    worker_id: self.config.worker_id.clone(),
                    queues: self.config.queues.clone(),
                    kinds: kinds.clone(),
                    limit: free,
                    lease: self.config.lease,
                };
                let started = std::time::Instant::now();
                match self.store.job_claim(&request).await {
                    Ok(claimed) => {
                        telemetry::claimed(started.elapsed(), claimed.len());
                        store_backoff = Duration::ZERO;
                        claimed_any = !claimed.is_empty();
                        for c in claimed {
                            report.runs += 1;
                            self.spawn_run(&mut tasks, c);
                        }
                        if !claimed_any
                            && self.config.dynamic_splitting
                            && last_split_request
                                .is_none_or(|t| t.elapsed() >= split_request_interval)
                        {
                            last_split_request = Some(Instant::now());
                            if self.request_split(&kinds).await {
                                report.split_requests += 1;
                            }
                        }
                    }
                    Err(error) => {
                        store_backoff = (store_backoff * 2)
                            .clamp(self.config.poll_interval, Duration::from_secs(30));
                        tracing::error!(%error, retry_in = ?store_backoff, "claiming jobs failed");
                    }
                }
            }

            if until_idle && !claimed_any && tasks.is_empty() && store_backoff.is_zero() {
                break;
            }
            if claimed_any && tasks.len() < self.config.concurrency {
                continue; // there may be more waiting
            }
            let wait = store_backoff.max(self.config.poll_interval);
            let has_room = tasks.len() < self.config.concurrency;
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    self.finish(joined, &mut report);
                }
                _ = self.store.job_wait_available(), if has_room && store_backoff.is_zero() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            while let Some(joined) = tasks.try_join_next() {
                self.finish(joined, &mut report);
            }
        }

        self.drain(&mut tasks, &mut report).await;
        tracing::info!(worker = %self.config.worker_id, ?report, "worker stopped");
        Ok(report)
    }

    /// Idle with a free slot: asks the running partition with the most left to give
    /// half of it away. True if one was asked.
    async fn request_split(&self, kinds: &[String]) -> bool {
        let request = SplitRequest {
            queues: self.config.queues.clone(),
            kinds: kinds.to_vec(),
            min_remaining: self.config.split_min_remaining,
        };
        match self.store.job_request_split(&request).await {
            Ok(Some(id)) => {
                tracing::debug!(job = id, "asked a running partition to split");
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "asking a partition to split failed");
                false
            }
        }
    }

    fn spawn_run(&self, tasks: &mut JoinSet<(JobId, RunReport)>, claimed: Claimed) {
        let id = claimed.job.id;
        let kind = match self.registry.get(&claimed.job.kind) {
            Ok(kind) => Arc::clone(kind),
            Err(error) => {
                // Claims filter by kind, so this only happens if the store ignored
                // the filter; release the job untouched for a worker that knows it.
                tracing::error!(job = id, %error, "claimed a job of an unregistered kind");
                let store = Arc::clone(&self.store);
                tasks.spawn(async move {
                    let outcome = Outcome::Interrupted {
                        reason: InterruptReason::Shutdown,
                        run_at: crate::store::now_millis(),
                    };
                    let _ = store.job_release(id, claimed.token, None, &outcome).await;
                    (
                        id,
                        RunReport {
                            end: RunEnd::Interrupted(InterruptReason::Shutdown),
                            items: 0,
                        },
                    )
                });
                return;
            }
        };
        let durable = Progress {
            cursor: claimed.job.cursor.clone(),
            items_done: claimed.job.items_done,
            items_total: claimed.job.items_total,
            running_ms: claimed.job.running_ms,
        };
        let live = Arc::new(LiveJob::new(
            id,
            claimed.job.kind.clone(),
            claimed.token,
            durable,
        ));
        self.live.insert(Arc::clone(&live));
        let env = RunEnv {
            store: Arc::clone(&self.store),
            settings: self.config.resolve(&kind.settings()),
            claimed,
            shutdown: self.shutdown.clone(),
            live: Arc::clone(&live),
        };
        tracing::debug!(job = id, "run started");
        tasks.spawn(async move {
            let report = match AssertUnwindSafe(kind.run(env)).catch_unwind().await {
                Ok(report) => report,
                Err(panic) => {
                    // A bug in the runtime itself: the job stays leased and is rescued
                    // from its last checkpoint when the lease expires.
                    tracing::error!(job = id, panic = %panic_message(&*panic), "run panicked");
                    RunReport {
                        end: RunEnd::ReleaseFailed,
                        items: 0,
                    }
                }
            };
            (id, report)
        });
    }

    fn finish(
        &self,
        joined: std::result::Result<(JobId, RunReport), tokio::task::JoinError>,
        report: &mut WorkerReport,
    ) {
        match joined {
            Ok((id, run)) => {
                tracing::debug!(job = id, end = ?run.end, items = run.items, "run ended");
                if let Some(live) = self.live.remove(id) {
                    telemetry::run_ended(&live.kind, run.end);
                }
                report.count(&run);
            }
            Err(error) => tracing::error!(%error, "a run task failed"),
        }
    }

    /// Waits for running jobs to release themselves, up to the shutdown timeout,
    /// then stops the rest and releases them at their last checkpoint.
    async fn drain(&self, tasks: &mut JoinSet<(JobId, RunReport)>, report: &mut WorkerReport) {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(joined)) => self.finish(joined, report),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        if tasks.is_empty() {
            return;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for live in self.live.all() {
            let outcome = Outcome::Interrupted {
                reason: InterruptReason::Shutdown,
                run_at: crate::store::now_millis(),
            };
            // No progress: the store already holds the last checkpoint it accepted,
            // which may be newer than this worker's copy (a transactional job commits
            // its cursor with each item's work).
            match self
                .store
                .job_release(live.id, live.token, None, &outcome)
                .await
            {
                Ok(()) => {
                    tracing::warn!(
                        job = live.id,
                        "stopped at the shutdown deadline; released at its last checkpoint"
                    );
                    report.aborted += 1;
                    report.interrupted += 1;
                }
                Err(error) => {
                    tracing::warn!(job = live.id, %error, "could not release a job at shutdown; its lease will expire");
                    report.lease_lost += 1;
                }
            }
            self.live.remove(live.id);
        }
    }
}
