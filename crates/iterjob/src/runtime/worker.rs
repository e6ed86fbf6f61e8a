//! The worker: claims jobs, runs them concurrently, rescues expired leases, and
//! shuts down gracefully.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::registry::Registry;
use crate::runtime::backpressure::{self, SignalSource, StoreHealth, ThrottleSignal};
use crate::runtime::controls::{self, Controls, ControlsWatch};
use crate::runtime::live::{LiveJob, LiveJobs, RunningJob};
use crate::runtime::release::{MAX_BATCH, Releaser};
use crate::runtime::run::{RunEnv, RunReport, panic_message};
use crate::runtime::slots::Slots;
use crate::runtime::{RunEnd, WorkerConfig, telemetry};
use crate::runtime::{presence, retention, scheduler};
use crate::store::{
    ClaimRequest, Claimed, InterruptReason, JobId, Outcome, Progress, Release, SplitRequest, Store,
};

/// The event that says how a run ended, at the level an operator wants it: a
/// failure as an error, a retry as a warning, the rest as information.
fn run_ended(report: &RunReport, took: Duration) {
    let items = report.items;
    let took_ms = took.as_millis() as u64;
    match report.end {
        RunEnd::Completed => tracing::info!(items, took_ms, "job completed"),
        RunEnd::Interrupted(reason) => {
            tracing::info!(items, took_ms, %reason, "job interrupted; it resumes from its checkpoint")
        }
        RunEnd::Paused => tracing::info!(items, took_ms, "job paused"),
        RunEnd::Cancelled => tracing::info!(items, took_ms, "job cancelled"),
        RunEnd::Retrying => tracing::info!(
            items,
            took_ms,
            "run ended in an error; the job will be retried"
        ),
        RunEnd::Failed => tracing::error!(items, took_ms, "job failed for good"),
        RunEnd::Partitioned => tracing::info!(took_ms, "job split into its partitions"),
        RunEnd::LeaseLost => {
            tracing::warn!(
                items,
                took_ms,
                "run stopped: another worker owns the job now"
            )
        }
        RunEnd::ReleaseFailed => tracing::warn!(
            items,
            took_ms,
            "run ended without its release; the job is rescued when its lease expires"
        ),
    }
}

/// What a run task hands back: its job, its report, and how long it ran.
type Joined = (JobId, RunReport, Duration);

/// A claim in flight: a task of its own, so that it finishes and gives its pooled
/// connection back while the worker's loop awaits other store calls (a rescue, jobs
/// given back). Polled only by the loop, a claim holding the pool's last connection
/// would wait for the very call that waits for that connection: with a pool of one
/// connection and 64 worker processes, workers stalled until every acquire timed out
/// and their jobs' leases expired. Aborted when dropped (the worker's future was
/// dropped), as the future it replaces was.
struct ClaimTask(tokio::task::JoinHandle<(Result<Vec<Claimed>>, Duration)>);

impl Drop for ClaimTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ClaimTask {
    /// The claim's result and how long it took.
    async fn result(&mut self) -> (Result<Vec<Claimed>>, Duration) {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(error) => (
                Err(crate::Error::backend(format!(
                    "the claim task failed: {error}"
                ))),
                Duration::ZERO,
            ),
        }
    }
}

/// The claim in flight's result and how long it took; never resolves when there is
/// none.
async fn in_flight(claim: &mut Option<ClaimTask>) -> (Result<Vec<Claimed>>, Duration) {
    match claim {
        Some(claim) => claim.result().await,
        None => std::future::pending().await,
    }
}

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
    /// The latency of this worker's writes to the store (the store-latency signal).
    health: Arc<StoreHealth>,
    /// The switches and signals as last read (the poller of a running worker
    /// publishes them here).
    controls: Arc<watch::Sender<Arc<Controls>>>,
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
    /// Runs started (and jobs claimed ahead, then given back unstarted).
    pub runs: u64,
    /// Items processed, over all runs.
    pub items: u64,
    /// Runs that completed their job.
    pub completed: u64,
    /// Runs interrupted (shutdown, time slice, throttle), counting jobs claimed ahead
    /// and given back unstarted (see [`WorkerConfig::prefetch`]), which the store
    /// records as a run and an interruption too.
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
    /// The jobs whose latest run on this worker ended in an error to be retried
    /// (a job retried and later completed here is not among them).
    pub left_retrying: std::collections::BTreeSet<JobId>,
}

impl WorkerReport {
    fn count(&mut self, id: JobId, report: &RunReport) {
        self.items += report.items;
        if report.end == RunEnd::Retrying {
            self.left_retrying.insert(id);
        } else {
            self.left_retrying.remove(&id);
        }
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
        let (controls, _) = controls::channel();
        Ok(Worker {
            store,
            registry: Arc::new(registry),
            health: Arc::new(StoreHealth::new(config.backpressure.store_latency)),
            config,
            shutdown: CancellationToken::new(),
            live: Arc::default(),
            controls: Arc::new(controls),
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

    /// The backpressure signals holding jobs back on this worker right now
    /// (operator switches, store latency, health checks), as its last read found
    /// them; empty before [`Worker::run`] starts.
    pub fn throttles(&self) -> Vec<ThrottleSignal> {
        self.controls.borrow().throttles.clone()
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
        self.run_loop(None).await
    }

    /// Runs until no job can be claimed and none is running (jobs scheduled for
    /// later are left), or until the shutdown token is cancelled.
    pub async fn run_until_idle(&self) -> Result<WorkerReport> {
        self.run_loop(Some(Duration::ZERO)).await
    }

    /// Runs like [`Worker::run`], and returns once nothing was claimable and nothing
    /// ran for `grace` in a row (or the shutdown token is cancelled): for
    /// short-lived instances (a batch run, a spot fleet) that should stop paying
    /// once the queue is drained, yet not exit on a moment's lull. Jobs enqueued
    /// during the grace are picked up and restart the count. A store that fails to
    /// answer does not count as idle.
    pub async fn run_until_idle_for(&self, grace: Duration) -> Result<WorkerReport> {
        self.run_loop(Some(grace)).await
    }

    async fn run_loop(&self, exit_when_idle: Option<Duration>) -> Result<WorkerReport> {
        // a panic in job code keeps its backtrace for the job's record
        crate::runtime::panics::install_hook();
        let mut report = WorkerReport::default();
        let mut tasks: JoinSet<Joined> = JoinSet::new();
        let (releaser, batcher) =
            Releaser::start(Arc::clone(&self.store), Arc::clone(&self.health));
        // the operators' switches and the backpressure signals, read by one task
        // for every run of this worker
        let mut controls = self.controls.subscribe();
        let checked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let _checks = (!self.registry.health_checks().is_empty()).then(|| {
            AbortOnDrop(tokio::spawn(backpressure::run_checks(
                self.registry.health_checks().to_vec(),
                self.config.control_interval,
                self.config.backpressure.check_timeout,
                Arc::clone(&checked),
            )))
        });
        let _poller = AbortOnDrop(tokio::spawn(controls::poll(
            Arc::clone(&self.store),
            self.config.control_interval,
            Arc::clone(&self.controls),
            Arc::clone(&self.health),
            checked,
        )));
        // schedules: every worker with schedules looks for due ticks
        let _scheduler = (!self.registry.schedules().is_empty()).then(|| {
            AbortOnDrop(tokio::spawn(scheduler::run(
                Arc::clone(&self.store),
                Arc::clone(&self.registry),
                self.config.control_interval,
            )))
        });
        // retention: this worker prunes while it holds the store's retention lease
        let pruner_stop = CancellationToken::new();
        let pruner = self.config.retention.clone().map(|retention| {
            AbortOnDrop(tokio::spawn(retention::run(
                Arc::clone(&self.store),
                retention,
                self.config.worker_id.clone(),
                pruner_stop.clone(),
            )))
        });
        let slots = Arc::new(Slots::default());
        // presence: operators see this worker, its queues and the slots it uses
        let mut presence = crate::store::WorkerPresence::new(
            self.config.worker_id.clone(),
            crate::store::now_millis(),
        );
        presence.queues = self.config.queues.clone();
        presence.kinds = self
            .registry
            .kinds()
            .iter()
            .map(|k| k.to_string())
            .collect();
        presence.concurrency = u32::try_from(self.config.concurrency).unwrap_or(u32::MAX);
        presence.beat_every_ms =
            u64::try_from(self.config.presence_interval.as_millis()).unwrap_or(u64::MAX);
        let presence_stop = CancellationToken::new();
        let mut presence_task = AbortOnDrop(tokio::spawn(presence::run(
            Arc::clone(&self.store),
            presence,
            Arc::clone(&slots),
            self.config.presence_interval,
            presence_stop.clone(),
        )));
        let mut ahead = Ahead::default();
        // the claim in flight: the loop keeps starting jobs and joining runs meanwhile
        let mut claim: Option<ClaimTask> = None;
        // the last claim found nothing: claim again only after a wake-up
        let mut idle = false;
        // runs joined so far, and as of the claim in flight: a run that ended while
        // the claim was in flight may have put its job back after the claim looked
        let mut joined_runs: u64 = 0;
        let mut joined_at_claim: u64 = 0;
        // since when nothing ran and the claims found nothing (for `exit_when_idle`)
        let mut idle_since: Option<Instant> = None;
        // after a claim failed: no claim before this
        let mut claim_again_at: Option<Instant> = None;
        // while the store is slow: the next probe (one job per backoff); a store that
        // has recovered is claimed from at once, whatever this says
        let mut probe_again_at: Option<Instant> = None;
        let mut last_rescue: Option<Instant> = None;
        // After the store failed this worker (a claim or a rescue erred), no rescue
        // until its claims work again and two heartbeat intervals have passed: every
        // lease ran out during the outage, ours and other workers' alike, and their
        // runs are alive, renewing as soon as they get a connection; a rescue racing
        // them would count a crash (and use an attempt) for a fault not the job's.
        let mut store_failed = false;
        let mut rescue_hold: Option<Instant> = None;
        let mut store_backoff = Duration::ZERO;
        // split requests: one a second at most once one was made; when none could
        // be (no running partition has a known total with enough left yet, as right
        // after the partitions start), again after a poll interval (at least 100 ms)
        let mut next_split_request: Option<Instant> = None;
        let split_request_interval = self.config.poll_interval.max(Duration::from_secs(1));
        let split_retry = self
            .config
            .poll_interval
            .max(Duration::from_millis(100))
            .min(split_request_interval);
        let kinds: Vec<String> = self
            .registry
            .kinds()
            .iter()
            .map(|k| k.to_string())
            .collect();
        let exempt = self.registry.exempt_kinds();
        tracing::info!(worker = %self.config.worker_id, kinds = ?kinds, queues = ?self.config.queues, "worker started");

        while !self.shutdown.is_cancelled() {
            // a run of ours whose release is being retried holds a job whose lease
            // may have expired: it is not dead, so this worker rescues nothing
            // until that release is written (or given up)
            if last_rescue.is_none_or(|t| t.elapsed() >= self.config.rescue_interval)
                && releaser.retrying() == 0
                && !store_failed
                && rescue_hold.is_none_or(|t| Instant::now() >= t)
            {
                match self.store.job_rescue_expired(self.config.max_crashes).await {
                    Ok(rescued) => {
                        for r in rescued {
                            tracing::warn!(job = r.id, state = %r.state, "rescued a job whose lease expired");
                        }
                    }
                    Err(error) => {
                        store_failed = true;
                        tracing::warn!(%error, "rescuing expired leases failed");
                    }
                }
                last_rescue = Some(Instant::now());
            }

            let stale = ahead.take_stale(&self.config, slots.mean_hold());
            self.give_back(stale, InterruptReason::TimeSlice, &mut report)
                .await;
            if controls.has_changed().unwrap_or(false) {
                // jobs claimed ahead whose queue was paused since: not started, so
                // they go back whatever the pause's mode
                let held = ahead.take_paused(&controls.borrow_and_update());
                self.give_back(held, InterruptReason::QueuePaused, &mut report)
                    .await;
            }
            while self.free(&slots, &tasks) > 0 {
                let Some((claimed, _)) = ahead.ready.pop_front() else {
                    break;
                };
                report.runs += 1;
                self.spawn_run(&mut tasks, claimed, &releaser, &slots, &controls);
            }

            let free = self.free(&slots, &tasks);
            let prefetch = ahead.prefetch(&self.config, slots.mean_hold());
            let want = (free + ahead.freeing(&slots, prefetch) + prefetch)
                .saturating_sub(ahead.ready.len());
            // refill when a slot is free, or when the jobs held ready run low
            let refill = free > 0 || ahead.ready.len() <= prefetch / 2;
            // the store has recovered: claims go out at once, not at the next probe
            if probe_again_at.is_some()
                && !controls
                    .borrow()
                    .throttles
                    .iter()
                    .any(|s| s.source == SignalSource::StoreLatency)
            {
                probe_again_at = None;
            }
            // what the backpressure signals leave to claim, worked out only when a
            // claim may go out
            let plan = (claim.is_none()
                && !idle
                && want > 0
                && refill
                && claim_again_at.is_none_or(|at| Instant::now() >= at))
            .then(|| {
                controls
                    .borrow()
                    .claim_plan(&kinds, &exempt, &self.config.queues)
            })
            .filter(|plan| !plan.kinds.is_empty() && !plan.queues.is_empty())
            .filter(|plan| !plan.probe || probe_again_at.is_none_or(|at| Instant::now() >= at));
            if let Some(plan) = plan {
                let request = ClaimRequest {
                    worker_id: self.config.worker_id.clone(),
                    queues: plan.queues,
                    kinds: plan.kinds,
                    // a slow store gets one job at a time: a probe
                    limit: if plan.probe { 1 } else { want },
                    lease: self.config.lease,
                };
                probe_again_at = plan
                    .probe
                    .then(|| Instant::now() + self.config.backpressure.backoff);
                let store = Arc::clone(&self.store);
                let health = Arc::clone(&self.health);
                joined_at_claim = joined_runs;
                claim = Some(ClaimTask(tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let claimed = store.job_claim(&request).await;
                    let took = started.elapsed();
                    if let Ok(claimed) = &claimed {
                        telemetry::claimed(took, claimed.len());
                        if !claimed.is_empty() {
                            tracing::debug!(
                                jobs = ?claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(),
                                took_ms = took.as_millis() as u64,
                                "claimed"
                            );
                        }
                        // a claim that took jobs wrote them: a write's latency
                        if !claimed.is_empty() {
                            health.observe(took);
                        }
                    }
                    (claimed, took)
                })));
            }

            if let Some(grace) = exit_when_idle {
                let quiet = idle
                    && claim.is_none()
                    && tasks.is_empty()
                    && ahead.ready.is_empty()
                    && store_backoff.is_zero();
                if quiet {
                    if idle_since.get_or_insert_with(Instant::now).elapsed() >= grace {
                        break;
                    }
                } else if !tasks.is_empty() || !ahead.ready.is_empty() {
                    idle_since = None;
                }
            }
            // the next deadline still ahead (one passed with no claim possible, all
            // slots busy, would otherwise make this loop spin until a slot frees)
            let now = Instant::now();
            let mut wait = [claim_again_at, probe_again_at]
                .into_iter()
                .flatten()
                .filter(|at| *at > now)
                .min()
                .map_or(self.config.poll_interval, |at| at - now);
            // wake when the oldest job held ready has waited too long, to give it
            // back to a worker that has a slot for it
            if let Some((_, at)) = ahead.ready.front() {
                let due = (*at + ahead.hold_limit(&self.config, slots.mean_hold()))
                    .saturating_duration_since(Instant::now());
                wait = wait.min(due);
            }
            let has_room = free > 0;
            let mut woken = true;
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                (claimed, took) = in_flight(&mut claim) => {
                    claim = None;
                    woken = false;
                    match claimed {
                        Ok(claimed) => {
                            ahead.claimed_in(took);
                            store_backoff = Duration::ZERO;
                            if store_failed {
                                store_failed = false;
                                rescue_hold =
                                    Some(Instant::now() + self.config.heartbeat_interval * 2);
                            }
                            if claim_again_at.is_some_and(|at| Instant::now() >= at) {
                                claim_again_at = None;
                            }
                            // empty, and no run of ours ended meanwhile (its job
                            // may be back in the queue since the claim looked)
                            idle = claimed.is_empty() && joined_runs == joined_at_claim;
                            if idle
                                && self.config.dynamic_splitting
                                && self.free(&slots, &tasks) > 0
                                && next_split_request.is_none_or(|t| Instant::now() >= t)
                            {
                                let asked = self.request_split(&kinds).await;
                                next_split_request = Some(
                                    Instant::now()
                                        + if asked { split_request_interval } else { split_retry },
                                );
                                if asked {
                                    report.split_requests += 1;
                                }
                            }
                            for c in claimed {
                                if self.free(&slots, &tasks) > 0 {
                                    report.runs += 1;
                                    self.spawn_run(&mut tasks, c, &releaser, &slots, &controls);
                                } else {
                                    ahead.ready.push_back((c, Instant::now()));
                                }
                            }
                        }
                        Err(error) => {
                            store_failed = true;
                            store_backoff = (store_backoff * 2)
                                .clamp(self.config.poll_interval, Duration::from_secs(30));
                            claim_again_at = Some(Instant::now() + store_backoff);
                            tracing::error!(%error, retry_in = ?store_backoff, "claiming jobs failed");
                        }
                    }
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    self.finish(joined, &mut report, &mut ahead);
                    joined_runs += 1;
                }
                // a run handed over its release: start the next job now
                _ = slots.freed(), if !tasks.is_empty() => woken = false,
                Ok(()) = controls.changed() => woken = false,
                _ = self.store.job_wait_available(), if has_room && claim.is_none() && store_backoff.is_zero() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            if woken {
                idle = false;
            }
            while let Some(joined) = tasks.try_join_next() {
                self.finish(joined, &mut report, &mut ahead);
                // the run may have put its job back in the queue (a time slice):
                // claim again before concluding there is nothing to do
                idle = false;
                joined_runs += 1;
            }
        }

        let mut held: Vec<Claimed> = ahead.ready.drain(..).map(|(c, _)| c).collect();
        if let Some(mut claim) = claim.take()
            && let (Ok(claimed), _) = claim.result().await
        {
            held.extend(claimed);
        }
        self.give_back(held, InterruptReason::Shutdown, &mut report)
            .await;
        self.drain(&mut tasks, &mut report, &mut ahead).await;
        // every run has ended (or was stopped): write what the batcher still holds
        drop(releaser);
        if let Err(error) = batcher.await {
            tracing::error!(%error, "the release batcher failed");
        }
        if let Some(mut pruner) = pruner {
            // let another worker prune at once rather than after the lease expires;
            // the pruner stops between statements first, so that none of its own
            // can take the lease again after it is given up
            pruner_stop.cancel();
            if tokio::time::timeout(PRUNER_STOP, &mut pruner.0)
                .await
                .is_err()
            {
                tracing::warn!(
                    "retention: the pruner did not stop within {PRUNER_STOP:?}; stopped it \
                     mid-statement, the lease may stay taken until it expires"
                );
            }
            drop(pruner);
            if let Err(error) = self
                .store
                .lease_release(retention::LEASE, &self.config.worker_id)
                .await
            {
                tracing::debug!(%error, "could not give up the retention lease");
            }
        }
        // the last beat lands before the goodbye, never after it
        presence_stop.cancel();
        let _ = tokio::time::timeout(PRUNER_STOP, &mut presence_task.0).await;
        drop(presence_task);
        if let Err(error) = self.store.worker_gone(&self.config.worker_id).await {
            tracing::debug!(%error, "could not remove the worker's presence");
        }
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

    /// Slots free for another run: fewer than `concurrency` runs working, and at
    /// most a full release batch more runs alive (working, or waiting for their
    /// release to be written).
    fn free(&self, slots: &Slots, tasks: &JoinSet<Joined>) -> usize {
        let concurrency = self.config.concurrency;
        concurrency
            .saturating_sub(slots.working())
            .min((concurrency + MAX_BATCH).saturating_sub(tasks.len()))
    }

    /// Gives jobs claimed ahead, never started, back to their queue (runnable at once,
    /// progress untouched), in one store call. The store counted their claim as a run,
    /// and counts this release as an interruption: so does the report.
    async fn give_back(
        &self,
        jobs: Vec<Claimed>,
        reason: InterruptReason,
        report: &mut WorkerReport,
    ) {
        if jobs.is_empty() {
            return;
        }
        let run_at = crate::store::now_millis();
        let releases: Vec<Release> = jobs
            .iter()
            .map(|c| Release {
                id: c.job.id,
                token: c.token,
                progress: None,
                outcome: Outcome::Interrupted {
                    reason,
                    run_at,
                    error: None,
                },
            })
            .collect();
        match self.store.job_release_many(&releases).await {
            Ok(results) => {
                for (release, result) in releases.iter().zip(results) {
                    match result {
                        Ok(()) => {
                            report.runs += 1;
                            report.interrupted += 1;
                            tracing::debug!(job = release.id, %reason, "gave back a job claimed ahead")
                        }
                        Err(error) => {
                            tracing::warn!(job = release.id, %error, "could not give back a job claimed ahead; its lease will expire")
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, count = releases.len(), "could not give back jobs claimed ahead; their leases will expire")
            }
        }
    }

    fn spawn_run(
        &self,
        tasks: &mut JoinSet<Joined>,
        claimed: Claimed,
        releaser: &Releaser,
        slots: &Arc<Slots>,
        controls: &ControlsWatch,
    ) {
        let id = claimed.job.id;
        let kind = match self.registry.get(&claimed.job.kind) {
            Ok(kind) => Arc::clone(kind),
            Err(error) => {
                // Claims filter by kind, so this only happens if the store ignored
                // the filter; release the job untouched for a worker that knows it.
                tracing::error!(job = id, %error, "claimed a job of an unregistered kind");
                let store = Arc::clone(&self.store);
                tasks.spawn(async move {
                    let started = Instant::now();
                    let outcome = Outcome::Interrupted {
                        reason: InterruptReason::Shutdown,
                        run_at: crate::store::now_millis(),
                        error: None,
                    };
                    let _ = store.job_release(id, claimed.token, None, &outcome).await;
                    (
                        id,
                        RunReport {
                            end: RunEnd::Interrupted(InterruptReason::Shutdown),
                            items: 0,
                        },
                        started.elapsed(),
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
        // every event of the run, the job's own `tracing` calls in `process`
        // included, carries the job it belongs to; at the error level so that the
        // span is on whenever any event is (a filter at `warn` would drop an info
        // span and leave a warning without its job)
        let span = tracing::error_span!(
            "run",
            job = id,
            kind = %claimed.job.kind,
            attempt = claimed.job.attempts + 1,
            run = claimed.job.runs,
            partition_of = claimed.job.parent_id,
            queue = %claimed.job.queue,
        );
        // and joins the trace of whoever enqueued the job (feature `opentelemetry`)
        crate::otel::join_trace(&span, claimed.job.trace_context.as_deref());
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
            releaser: releaser.clone(),
            slot: slots.take(),
            controls: controls.clone(),
            health: Arc::clone(&self.health),
        };
        tasks.spawn(tracing::Instrument::instrument(
            async move {
                tracing::debug!("run started");
                let started = Instant::now();
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
                run_ended(&report, started.elapsed());
                (id, report, started.elapsed())
            },
            span,
        ));
    }

    fn finish(
        &self,
        joined: std::result::Result<Joined, tokio::task::JoinError>,
        report: &mut WorkerReport,
        ahead: &mut Ahead,
    ) {
        match joined {
            Ok((id, run, took)) => {
                // splitting a job into partitions walks no item: it says nothing
                // about how long runs hold a slot
                if run.end != RunEnd::Partitioned {
                    ahead.ran(took);
                }
                tracing::debug!(job = id, end = ?run.end, items = run.items, "run ended");
                if let Some(live) = self.live.remove(id) {
                    telemetry::run_ended(&live.kind, run.end);
                }
                report.count(id, &run);
            }
            Err(error) => tracing::error!(%error, "a run task failed"),
        }
    }

    /// Waits for running jobs to release themselves, up to the shutdown timeout,
    /// then stops the rest and releases them at their last checkpoint.
    async fn drain(
        &self,
        tasks: &mut JoinSet<Joined>,
        report: &mut WorkerReport,
        ahead: &mut Ahead,
    ) {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(joined)) => self.finish(joined, report, ahead),
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
                error: None,
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

/// Most jobs held ready per slot while runs are much shorter than a claim (see
/// [`Ahead::prefetch`]): 16, so 128 at a concurrency of 8, about the batch past
/// which a claim's fixed cost stops mattering on PostgreSQL (BENCHMARKS.md: the
/// minimal claim-and-finish loop runs about 1.5–1.7× faster at 100 rows a statement
/// than at 12).
const AHEAD_PER_SLOT: usize = 16;

/// Run times below this count as this (a run is never free; a clock that reads 0
/// must not make the claims unbounded).
const MIN_RUN_SECS: f64 = 20e-6;

/// The least time a job held ready may wait for a slot before it is given back
/// (see [`Ahead::hold_limit`]): below it, ordinary jitter in short runs would send
/// jobs back and forth.
const HOLD_MIN: Duration = Duration::from_millis(100);

/// Jobs claimed ahead of free slots, and what decides how many (see
/// [`WorkerConfig::prefetch`]).
#[derive(Default)]
struct Ahead {
    /// Claimed jobs waiting for a slot, with when they were claimed.
    ready: VecDeque<(Claimed, Instant)>,
    /// Moving average of recent runs' durations, in seconds; `None` before the first
    /// run ends (no claiming ahead until runs are known to be short).
    mean_run: Option<f64>,
    /// Moving average of recent claims' round trips, in seconds.
    mean_claim: Option<f64>,
}

impl Ahead {
    /// Notes a finished run's duration.
    fn ran(&mut self, took: Duration) {
        let took = took.as_secs_f64();
        self.mean_run = Some(match self.mean_run {
            None => took,
            Some(mean) => mean + (took - mean) / 8.0,
        });
    }

    /// Notes a claim's round trip.
    fn claimed_in(&mut self, took: Duration) {
        let took = took.as_secs_f64();
        self.mean_claim = Some(match self.mean_claim {
            None => took,
            Some(mean) => mean + (took - mean) / 8.0,
        });
    }

    /// How many of the working runs will have freed their slot by the time a claim
    /// sent now comes back: all of them while claiming ahead (`prefetch` > 0) and
    /// runs hold their slot for less than a claim's round trip, else none. Without
    /// it, a worker of jobs much shorter than a claim claims only for the slots free
    /// when it sends the claim, while the runs it just started end long before the
    /// claim returns: each claim would fill the worker only halfway.
    fn freeing(&self, slots: &Slots, prefetch: usize) -> usize {
        match (slots.mean_hold(), self.mean_claim) {
            (Some(hold), Some(claim)) if prefetch > 0 && hold.as_secs_f64() < claim => {
                slots.working()
            }
            _ => 0,
        }
    }

    /// How many jobs to hold ready now. None unless claiming ahead is on and runs
    /// are short (under a tenth of the heartbeat interval). Then enough that the
    /// slots do not run dry while the next claim is out: what they finish in two
    /// claim round trips at the time runs recently held their slot (`hold`; a run
    /// frees its slot when it hands its release over, so this is shorter than the
    /// run), at least the setting and at most [`AHEAD_PER_SLOT`] per slot. Runs
    /// much shorter than a claim (one-item jobs) so get claims of up to a hundred
    /// jobs or more, each claim and each batch of releases carrying many jobs; runs
    /// as long as a claim keep the setting.
    fn prefetch(&self, config: &WorkerConfig, hold: Option<Duration>) -> usize {
        let short = config.heartbeat_interval.as_secs_f64() / 10.0;
        match self.mean_run {
            Some(mean) if mean < short && config.prefetch > 0 => {
                let most = config.prefetch.max(AHEAD_PER_SLOT * config.concurrency);
                let hold = hold.map_or(mean, |h| h.as_secs_f64());
                let during_claims = match self.mean_claim {
                    Some(claim) => 2.0 * config.concurrency as f64 * claim / hold.max(MIN_RUN_SECS),
                    None => 0.0,
                };
                (during_claims.ceil() as usize).clamp(config.prefetch, most)
            }
            _ => 0,
        }
    }

    /// How long a job may wait ready before it is given back: eight times what the
    /// jobs ahead of it should take at the time runs recently held their slot
    /// (`hold`, else the run time), at least [`HOLD_MIN`], at most the heartbeat
    /// interval. A job held ready while every slot is taken by runs that turned long
    /// goes back to its queue within about that, where an idle worker can claim it,
    /// instead of waiting behind them.
    fn hold_limit(&self, config: &WorkerConfig, hold: Option<Duration>) -> Duration {
        let most = config.heartbeat_interval;
        let per_run = hold.map(|h| h.as_secs_f64()).or(self.mean_run);
        match per_run {
            Some(mean) => {
                let ahead = self.ready.len() as f64 / config.concurrency as f64 + 1.0;
                Duration::try_from_secs_f64(8.0 * ahead * mean)
                    .unwrap_or(most)
                    .clamp(HOLD_MIN.min(most), most)
            }
            None => most,
        }
    }

    /// Takes the jobs held ready whose queue is paused now.
    fn take_paused(&mut self, controls: &Controls) -> Vec<Claimed> {
        let (paused, kept): (VecDeque<_>, VecDeque<_>) = self
            .ready
            .drain(..)
            .partition(|(c, _)| controls.is_paused(&c.job.queue));
        self.ready = kept;
        paused.into_iter().map(|(c, _)| c).collect()
    }

    /// Takes out the jobs that have waited their [`Ahead::hold_limit`] or longer.
    /// Any such job proves that runs hold their slots that long: claiming ahead
    /// stops until short runs bring the average down again (else a worker whose runs
    /// turned long would claim ahead and give back every hold limit, until a long
    /// run ended).
    fn take_stale(&mut self, config: &WorkerConfig, hold: Option<Duration>) -> Vec<Claimed> {
        let max_wait = self.hold_limit(config, hold);
        let mut stale = Vec::new();
        while let Some((_, at)) = self.ready.front() {
            if at.elapsed() < max_wait {
                break;
            }
            if let Some((claimed, _)) = self.ready.pop_front() {
                stale.push(claimed);
            }
        }
        if !stale.is_empty() {
            // runs are not short after all: twice the bar, so a few short runs must
            // end before claiming ahead resumes
            let long = max_wait
                .as_secs_f64()
                .max(config.heartbeat_interval.as_secs_f64() / 10.0 * 2.0);
            self.mean_run = Some(self.mean_run.map_or(long, |mean| mean.max(long)));
        }
        stale
    }
}

/// Aborts a helper task when the worker's loop ends, however it ends.
/// How long a stopping worker waits for its pruner (or its presence beat) to
/// finish the statement in flight.
const PRUNER_STOP: Duration = Duration::from_secs(10);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_count_the_working_slots_only_for_runs_shorter_than_a_claim() {
        let slots = Arc::new(Slots::default());
        let mut ahead = Ahead::default();
        let held: Vec<_> = (0..3).map(|_| slots.take()).collect();
        // nothing known yet: only the free slots count
        assert_eq!(ahead.freeing(&slots, 4), 0);
        ahead.claimed_in(Duration::from_millis(100));
        assert_eq!(ahead.freeing(&slots, 4), 0, "no run has freed a slot yet");
        // runs of about 50 µs against claims of 100 ms: the 3 working slots free first
        let quick = slots.take();
        std::thread::sleep(Duration::from_micros(50));
        drop(quick);
        assert_eq!(ahead.freeing(&slots, 4), 3);
        assert_eq!(
            ahead.freeing(&slots, 0),
            0,
            "not while claiming ahead is off"
        );
        // claims faster than the runs: the working slots stay busy past the claim
        for _ in 0..128 {
            ahead.claimed_in(Duration::from_micros(1));
        }
        assert_eq!(ahead.freeing(&slots, 4), 0);
        drop(held);
    }

    #[test]
    fn a_job_left_waiting_stops_claiming_ahead() {
        let config = WorkerConfig::default();
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_millis(1));
        assert_eq!(ahead.prefetch(&config, None), config.prefetch, "short runs");
        ahead.ready.push_back((
            Claimed {
                job: crate::store::memory::new_record(
                    1,
                    &crate::store::NewJob::new("k", serde_json::Value::Null),
                    0,
                ),
                token: crate::store::RunToken(1),
            },
            Instant::now() - config.heartbeat_interval,
        ));
        assert_eq!(ahead.take_stale(&config, None).len(), 1);
        assert_eq!(
            ahead.prefetch(&config, None),
            0,
            "a job waited a heartbeat interval for a slot: runs are not short"
        );
        // short runs turn it back on
        for _ in 0..64 {
            ahead.ran(Duration::from_millis(1));
        }
        assert_eq!(ahead.prefetch(&config, None), config.prefetch);
    }

    #[test]
    fn runs_much_shorter_than_a_claim_get_bigger_claims() {
        let mut config = WorkerConfig {
            concurrency: 8,
            ..WorkerConfig::default()
        };
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_millis(10));
        ahead.claimed_in(Duration::from_millis(1));
        // 8 slots finish 1.6 runs of 10 ms in two claims of 1 ms: the setting holds
        assert_eq!(ahead.prefetch(&config, None), config.prefetch);
        // runs of 100 µs against claims of 1 ms: 160 in two claims, capped per slot
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_micros(100));
        ahead.claimed_in(Duration::from_millis(1));
        assert_eq!(ahead.prefetch(&config, None), AHEAD_PER_SLOT * 8);
        // runs of 1 ms: 16 in two claims of 1 ms
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_millis(1));
        ahead.claimed_in(Duration::from_millis(1));
        assert_eq!(ahead.prefetch(&config, None), 16);
        // a run time of zero is not infinitely many runs
        let mut ahead = Ahead::default();
        ahead.ran(Duration::ZERO);
        ahead.claimed_in(Duration::from_millis(1));
        assert_eq!(ahead.prefetch(&config, None), AHEAD_PER_SLOT * 8);
        // off stays off
        config.prefetch = 0;
        assert_eq!(ahead.prefetch(&config, None), 0);
    }

    #[test]
    fn a_held_job_waits_a_few_runs_at_most() {
        let config = WorkerConfig {
            concurrency: 2,
            ..WorkerConfig::default()
        };
        let mut ahead = Ahead::default();
        assert_eq!(
            ahead.hold_limit(&config, None),
            config.heartbeat_interval,
            "no run known yet"
        );
        ahead.ran(Duration::from_millis(1));
        assert_eq!(
            ahead.hold_limit(&config, None),
            HOLD_MIN,
            "short runs: the floor"
        );
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_millis(100));
        for _ in 0..4 {
            ahead.ready.push_back((held_job(), Instant::now()));
        }
        // 4 held for 2 slots: two rounds ahead, plus the run of its own, times 8
        let limit = ahead.hold_limit(&config, None).as_secs_f64();
        assert!((limit - 2.4).abs() < 1e-6, "{limit}");
        // the slots' hold time counts, not the run's (which waits for its release)
        assert_eq!(
            ahead.hold_limit(&config, Some(Duration::from_millis(1))),
            HOLD_MIN
        );
        let mut ahead = Ahead::default();
        ahead.ran(Duration::from_secs(1));
        assert_eq!(
            ahead.hold_limit(&config, None),
            config.heartbeat_interval,
            "never past the heartbeat interval"
        );
    }

    fn held_job() -> Claimed {
        Claimed {
            job: crate::store::memory::new_record(
                1,
                &crate::store::NewJob::new("k", serde_json::Value::Null),
                0,
            ),
            token: crate::store::RunToken(1),
        }
    }
}
