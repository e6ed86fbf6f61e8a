//! One run of one job: claim to release. The loop that owns the iteration.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, JobError};
use crate::job::PartitionFailure;
use crate::job::{Job, JobContext};
use crate::registry::decode_params;
use crate::runtime::backoff::retry_delay;
use crate::runtime::backpressure::StoreHealth;
use crate::runtime::controls::ControlsWatch;
use crate::runtime::live::LiveJob;
use crate::runtime::pace::{Pacer, Stop};
use crate::runtime::panics;
use crate::runtime::release::Releaser;
use crate::runtime::signals::{
    BACKPRESSURE, CANCEL, CHECKPOINT, LEASE_EXPIRING, LEASE_LOST, PAUSE, QUEUE_PAUSED, SHUTDOWN,
    SPLIT, Signals, Supervisor, THROTTLE, TIME_SLICE,
};
use crate::runtime::slots::Slot;
use crate::runtime::{ResolvedSettings, RunEnd, telemetry};
use crate::store::{
    Claimed, Failure, InterruptReason, MAX_PARTITIONS, Outcome, Progress, Release, RunToken, Split,
    Store, duration_millis, now_millis,
};

/// How long a job handed back because its lease could not be renewed waits before
/// it can be claimed again: the store was slow or away, give it a moment.
const LEASE_EXPIRING_BACKOFF: Duration = Duration::from_secs(1);

/// How long a failing release is retried at most (at least a lease), while this
/// worker's rescuer stands aside.
const RELEASE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Everything a run needs from its worker.
pub(crate) struct RunEnv {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) claimed: Claimed,
    pub(crate) settings: ResolvedSettings,
    pub(crate) shutdown: CancellationToken,
    pub(crate) live: Arc<LiveJob>,
    /// Writes the run's release, batched with other runs' of the same worker.
    pub(crate) releaser: Releaser,
    /// The run's work slot, freed when its release is handed over.
    pub(crate) slot: Slot,
    /// The operators' switches (paused queues, throttle switches) and the
    /// backpressure signals, as the worker reads them.
    pub(crate) controls: ControlsWatch,
    /// Where the run's checkpoint times go (the store-latency signal).
    pub(crate) health: Arc<StoreHealth>,
}

/// What a run did, for the worker's tally and logs.
#[derive(Debug)]
pub(crate) struct RunReport {
    pub(crate) end: RunEnd,
    pub(crate) items: u64,
}

/// What the loop does after attending to signals between two items.
enum Attended<P> {
    /// Go on with the next item.
    Continue,
    /// The run is over.
    End(RunReport),
    /// The partition was split: go on from the cursor with these parameters.
    Resplit(P),
}

/// The run's position and progress, in typed form.
struct Position<C> {
    cursor: Option<C>,
    items_done: u64,
    base_running_ms: u64,
    started: tokio::time::Instant,
}

/// Runs one claimed job to the end of its run and releases it.
pub(crate) async fn run_job<J: Job>(job: Arc<J>, env: RunEnv) -> RunReport {
    let signals = Signals::new();
    let done = CancellationToken::new();
    let supervisor = Supervisor {
        store: Arc::clone(&env.store),
        job: env.claimed.job.id,
        token: env.claimed.token,
        lease: env.settings.lease,
        heartbeat_interval: env.settings.heartbeat_interval,
        checkpoint_interval: env.settings.checkpoint_interval,
        throttle_interval: env.settings.throttle_check_interval,
        max_runtime: env.settings.max_runtime,
        shutdown: env.shutdown.clone(),
        signals: Arc::clone(&signals),
        releaser: env.releaser.clone(),
        queue: env.claimed.job.queue.clone(),
        controls: env.controls.clone(),
    };
    let supervisor = tokio::spawn(supervisor.run(done.clone()));
    let _stop_supervisor = done.clone().drop_guard();

    let mut runner = Runner {
        job,
        env,
        signals,
        supervisor_done: done.clone(),
    };
    let report = runner.run().await;
    done.cancel();
    let _ = supervisor.await;
    report
}

struct Runner<J: Job> {
    job: Arc<J>,
    env: RunEnv,
    signals: Arc<Signals>,
    /// Stops the supervisor: no heartbeat may race the run's release.
    supervisor_done: CancellationToken,
}

impl<J: Job> Runner<J> {
    fn id(&self) -> i64 {
        self.env.claimed.job.id
    }

    fn token(&self) -> RunToken {
        self.env.claimed.token
    }

    async fn run(&mut self) -> RunReport {
        let record = self.env.claimed.job.clone();
        let params = match decode_params::<J>(&record.params) {
            Ok(p) => p,
            Err(e) => {
                let message = format!(
                    "{e}; the stored parameters no longer fit the kind's Params type: cancel this job and enqueue it again with valid parameters"
                );
                return self.fail_unstarted(message).await;
            }
        };
        let cursor = match record
            .cursor
            .clone()
            .map(serde_json::from_value::<J::Cursor>)
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                let message = format!(
                    "stored cursor {} does not deserialize as the cursor type of job kind `{}` ({}): {e}; the kind's Cursor type changed since this job checkpointed: restore the old type, or cancel the job and enqueue it again",
                    record
                        .cursor
                        .as_ref()
                        .map(Value::to_string)
                        .unwrap_or_default(),
                    J::KIND,
                    std::any::type_name::<J::Cursor>(),
                );
                return self.fail_unstarted(message).await;
            }
        };
        let mut ctx = JobContext {
            params,
            job_id: record.id,
            attempt: record.attempts,
            run: record.runs,
            queue: record.queue.clone(),
            run_token: self.env.claimed.token,
            lease: self.env.settings.lease,
            lease_renewal: crate::runtime::LeaseRenewal::new(Arc::clone(&self.signals)),
        };
        let mut pos = Position {
            cursor,
            items_done: record.items_done,
            base_running_ms: record.running_ms,
            started: tokio::time::Instant::now(),
        };
        let items_at_start = pos.items_done;
        if let Some(n) = record.partitions {
            return self.plan(&ctx, &pos, n).await;
        }
        if record.items_total.is_none() {
            self.spawn_total(&record.params);
        }

        let fresh = record.cursor.is_none() && record.items_done == 0;
        let hook = if fresh {
            guard(self.job.on_start(&ctx)).await
        } else {
            guard(self.job.on_resume(&ctx)).await
        };
        if let Err(e) = hook {
            return self.error(&ctx, &pos, e, items_at_start).await;
        }

        let checkpoint_every = self.env.settings.checkpoint_every.unwrap_or(u64::MAX);
        let throttle_every = self.env.settings.throttle_check_every;
        let mut since_checkpoint = 0u64;
        let mut since_throttle = 0u64;
        // A job whose enumerator and work never pend would never give its thread
        // back to the scheduler, starving its supervisor (timers, heartbeats,
        // shutdown): yield at least every few milliseconds.
        let mut since_yield_check = 0u32;
        let mut last_yield = std::time::Instant::now();
        let live = Arc::clone(&self.env.live);
        let job = Arc::clone(&self.job);
        let mut resplit: Option<J::Params> = None;
        let mut pace = Pacer::new(&*self.job, &self.env.store, &live, self.env.settings.lease);

        // One pass per set of parameters: a split changes them between two items and
        // the walk goes on from the same cursor with a new enumerator.
        'walk: loop {
            if let Some(params) = resplit.take() {
                ctx.params = params;
            }
            let enumerator = match job.enumerate(&ctx.params, pos.cursor.clone()) {
                Ok(e) => e,
                Err(e) => return self.error(&ctx, &pos, e, items_at_start).await,
            };
            let mut enumerator = pin!(enumerator);
            // the default backpressure is looked at before the first item: a job
            // claimed as a signal came on goes back before doing any work
            let mut first = self.env.settings.backpressure;
            loop {
                let mut flags = self.signals.take();
                if first {
                    flags |= BACKPRESSURE;
                    first = false;
                }
                if since_checkpoint >= checkpoint_every {
                    flags |= CHECKPOINT;
                }
                if since_throttle >= throttle_every {
                    flags |= THROTTLE;
                }
                if flags != 0 {
                    if flags & CHECKPOINT != 0 {
                        since_checkpoint = 0;
                    }
                    if flags & THROTTLE != 0 {
                        since_throttle = 0;
                    }
                    match self.attend(&ctx, &pos, flags, items_at_start).await {
                        Attended::Continue => {}
                        Attended::End(report) => return report,
                        Attended::Resplit(params) => {
                            resplit = Some(params);
                            continue 'walk;
                        }
                    }
                }

                let step = match AssertUnwindSafe(enumerator.next()).catch_unwind().await {
                    Ok(Some(Ok(step))) => step,
                    Ok(None) => break 'walk,
                    Ok(Some(Err(e))) => return self.error(&ctx, &pos, e, items_at_start).await,
                    Err(panic) => {
                        let backtrace = panics::take_backtrace();
                        let e = JobError::retryable(format!(
                            "the enumerator panicked: {}",
                            panic_message(&*panic)
                        ));
                        let at = FailedAt {
                            item: None,
                            backtrace,
                        };
                        return self.error_at(&ctx, &pos, e, at, items_at_start).await;
                    }
                };
                let (item, next_cursor) = step;
                let count = self.job.count_items(&item);
                while pace.active()
                    && let Err(stop) = pace.before_item(count, &self.signals).await
                {
                    let attended = match stop {
                        Stop::Signals(flags) => {
                            self.attend(&ctx, &pos, flags, items_at_start).await
                        }
                        Stop::Failed(e) => {
                            Attended::End(self.error(&ctx, &pos, e, items_at_start).await)
                        }
                    };
                    match attended {
                        Attended::Continue => {}
                        Attended::End(report) => return report,
                        // the item not yet processed is in the part kept: the new
                        // enumerator yields it again
                        Attended::Resplit(params) => {
                            resplit = Some(params);
                            continue 'walk;
                        }
                    }
                }
                match AssertUnwindSafe(self.job.process(&ctx, item))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let at = FailedAt::item(&next_cursor, None);
                        return self.error_at(&ctx, &pos, e, at, items_at_start).await;
                    }
                    Err(panic) => {
                        let backtrace = panics::take_backtrace();
                        let e = JobError::retryable(format!(
                            "the work panicked on the item after cursor {}: {}",
                            cursor_text(&pos.cursor),
                            panic_message(&*panic)
                        ));
                        let at = FailedAt::item(&next_cursor, backtrace);
                        return self.error_at(&ctx, &pos, e, at, items_at_start).await;
                    }
                }
                pos.cursor = Some(next_cursor);
                pos.items_done += count;
                since_checkpoint += count;
                since_throttle += count;
                live.set_items_done(pos.items_done);
                if let Some(backoff) = pace.after_item() {
                    let reason = InterruptReason::Throttled;
                    return self
                        .interrupt(&ctx, &pos, reason, backoff, items_at_start)
                        .await;
                }
                since_yield_check += 1;
                if since_yield_check >= YIELD_CHECK_EVERY {
                    since_yield_check = 0;
                    if last_yield.elapsed() >= YIELD_AFTER {
                        tokio::task::yield_now().await;
                        last_yield = std::time::Instant::now();
                    }
                }
            }
        }

        if self.env.live.items_total().is_none() {
            // The walk is over: the total is known exactly now.
            self.env.live.set_items_total(pos.items_done);
        }
        if let Err(e) = guard(self.job.on_complete(&ctx)).await {
            return self.error(&ctx, &pos, e, items_at_start).await;
        }
        self.release(&pos, Outcome::Completed, items_at_start).await
    }

    /// Acts on raised signals between two items.
    async fn attend(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        flags: u32,
        items_at_start: u64,
    ) -> Attended<J::Params> {
        if flags & LEASE_LOST != 0 {
            return Attended::End(RunReport {
                end: RunEnd::LeaseLost,
                items: pos.items_done - items_at_start,
            });
        }
        if flags & LEASE_EXPIRING != 0 {
            let why = format!(
                "interrupted, no attempt used: the store did not answer this run's heartbeats \
                 for nearly its whole lease ({:?}), so the run handed the job back",
                self.env.settings.lease
            );
            return Attended::End(
                self.interrupt_with(
                    ctx,
                    pos,
                    InterruptReason::Unavailable,
                    LEASE_EXPIRING_BACKOFF,
                    Some(why),
                    items_at_start,
                )
                .await,
            );
        }
        if flags & CANCEL != 0 {
            return Attended::End(self.release(pos, Outcome::Cancelled, items_at_start).await);
        }
        if flags & PAUSE != 0 {
            return Attended::End(self.release(pos, Outcome::Paused, items_at_start).await);
        }
        if flags & SHUTDOWN != 0 {
            return Attended::End(
                self.interrupt(
                    ctx,
                    pos,
                    InterruptReason::Shutdown,
                    Duration::ZERO,
                    items_at_start,
                )
                .await,
            );
        }
        if flags & QUEUE_PAUSED != 0 {
            return Attended::End(
                self.interrupt(
                    ctx,
                    pos,
                    InterruptReason::QueuePaused,
                    Duration::ZERO,
                    items_at_start,
                )
                .await,
            );
        }
        if flags & TIME_SLICE != 0 {
            return Attended::End(
                self.interrupt(
                    ctx,
                    pos,
                    InterruptReason::TimeSlice,
                    Duration::ZERO,
                    items_at_start,
                )
                .await,
            );
        }
        if flags & (THROTTLE | BACKPRESSURE) != 0 && self.env.settings.backpressure {
            let signal = self
                .env
                .controls
                .borrow()
                .throttle_for(&self.env.claimed.job.queue, J::KIND)
                .cloned();
            if let Some(signal) = signal {
                let backoff = self.env.settings.backpressure_backoff;
                tracing::info!(
                    job = self.id(),
                    kind = J::KIND,
                    source = signal.source.as_str(),
                    signal = %signal.name,
                    why = %signal.why,
                    "backing off: a backpressure signal covers this job"
                );
                telemetry::throttled(J::KIND, &signal);
                return Attended::End(
                    self.interrupt_with(
                        ctx,
                        pos,
                        InterruptReason::Throttled,
                        backoff,
                        Some(signal.message(backoff)),
                        items_at_start,
                    )
                    .await,
                );
            }
        }
        if flags & THROTTLE != 0
            && let Some(backoff) = guard_value(self.job.throttle(ctx)).await
        {
            return Attended::End(
                self.interrupt(
                    ctx,
                    pos,
                    InterruptReason::Throttled,
                    backoff,
                    items_at_start,
                )
                .await,
            );
        }
        if flags & SPLIT != 0 {
            return self.split(ctx, pos, items_at_start).await;
        }
        if flags & CHECKPOINT != 0 {
            let progress = match self.progress(pos) {
                Ok(p) => p,
                Err(message) => {
                    return Attended::End(self.fail_with(pos, message, items_at_start).await);
                }
            };
            let sent = self.signals.stamp();
            let started = std::time::Instant::now();
            match self
                .env
                .store
                .job_checkpoint(self.id(), self.token(), &progress, self.env.settings.lease)
                .await
            {
                Ok(control) => {
                    self.signals.renewed_at(sent);
                    telemetry::checkpoint_written(J::KIND, started.elapsed());
                    tracing::trace!(
                        items_done = progress.items_done,
                        took_ms = started.elapsed().as_millis() as u64,
                        "checkpoint"
                    );
                    self.env.health.observe(started.elapsed());
                    self.made_durable(&progress);
                    self.env.live.set_durable(progress);
                    if control.cancel_requested {
                        return Attended::End(
                            self.release(pos, Outcome::Cancelled, items_at_start).await,
                        );
                    }
                    if control.pause_requested {
                        return Attended::End(
                            self.release(pos, Outcome::Paused, items_at_start).await,
                        );
                    }
                    if control.split_requested {
                        return self.split(ctx, pos, items_at_start).await;
                    }
                }
                Err(Error::LeaseLost { .. }) => {
                    tracing::warn!(job = self.id(), "checkpoint rejected: lease lost; stopping");
                    return Attended::End(RunReport {
                        end: RunEnd::LeaseLost,
                        items: pos.items_done - items_at_start,
                    });
                }
                Err(error) => {
                    // Keep going; the next tick tries again. The heartbeat stops the
                    // run before the lease can expire if the store stays away.
                    tracing::warn!(job = self.id(), %error, "checkpoint failed; will retry");
                }
            }
        }
        Attended::Continue
    }

    /// The first run of a partitioned job: divide the collection and hand the parts
    /// to the store as child jobs.
    async fn plan(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        n: u32,
    ) -> RunReport {
        let n = n.clamp(1, MAX_PARTITIONS);
        let parts = match guard(self.job.partition(&ctx.params, n)).await {
            Ok(parts) => parts,
            Err(e) => return self.error(ctx, pos, e, pos.items_done).await,
        };
        if parts.len() > MAX_PARTITIONS as usize {
            let message = format!(
                "`Job::partition` of job kind `{}` returned {} partitions for {n} asked; at most {MAX_PARTITIONS} are allowed",
                J::KIND,
                parts.len()
            );
            return self.fail_with(pos, message, pos.items_done).await;
        }
        let children = match parts
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(children) => children,
            Err(e) => {
                let message = format!(
                    "the parameters of a partition of job kind `{}` do not serialize to JSON: {e}",
                    J::KIND
                );
                return self.fail_with(pos, message, pos.items_done).await;
            }
        };
        self.supervisor_done.cancel();
        match self
            .env
            .store
            .job_partition(self.id(), self.token(), &children)
            .await
        {
            Ok(ids) => {
                tracing::info!(
                    job = self.id(),
                    kind = J::KIND,
                    partitions = ids.len(),
                    "split into partitions"
                );
                RunReport {
                    end: RunEnd::Partitioned,
                    items: 0,
                }
            }
            Err(Error::LeaseLost { .. }) => RunReport {
                end: RunEnd::LeaseLost,
                items: 0,
            },
            Err(e) => {
                let e = JobError::retryable(e);
                self.error(ctx, pos, e, pos.items_done).await
            }
        }
    }

    /// A worker is idle: give half of what is left of this partition away, at this
    /// item boundary. The checkpoint and the new parameters are one fenced write.
    async fn split(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        items_at_start: u64,
    ) -> Attended<J::Params> {
        let divided = match guard(self.job.split(&ctx.params, pos.cursor.as_ref())).await {
            Ok(divided) => divided,
            Err(error) => {
                tracing::warn!(job = self.id(), %error, "dividing the partition failed; not splitting");
                None
            }
        };
        let split = match &divided {
            None => None,
            Some((keep, give)) => match (serde_json::to_value(keep), serde_json::to_value(give)) {
                (Ok(keep), Ok(give)) => Some(Split { keep, give }),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(job = self.id(), error = %e, "partition parameters do not serialize; not splitting");
                    None
                }
            },
        };
        let progress = match self.progress(pos) {
            Ok(p) => p,
            Err(message) => {
                return Attended::End(self.fail_with(pos, message, items_at_start).await);
            }
        };
        let sent = self.signals.stamp();
        match self
            .env
            .store
            .job_split(
                self.id(),
                self.token(),
                &progress,
                split.as_ref(),
                self.env.settings.lease,
            )
            .await
        {
            Ok(new) => {
                self.signals.renewed_at(sent);
                self.env.live.set_durable(progress);
                match (new, divided, split) {
                    (Some(new), Some((keep, _)), Some(split)) => {
                        tracing::info!(
                            job = self.id(),
                            new_partition = new,
                            "split the rest of the partition"
                        );
                        self.env.live.clear_items_total();
                        self.spawn_total(&split.keep);
                        Attended::Resplit(keep)
                    }
                    _ => Attended::Continue,
                }
            }
            Err(Error::LeaseLost { .. }) => Attended::End(RunReport {
                end: RunEnd::LeaseLost,
                items: pos.items_done - items_at_start,
            }),
            Err(error) => {
                // Nothing changed; the request stays and the next heartbeat asks again.
                tracing::warn!(job = self.id(), %error, "splitting failed; going on");
                Attended::Continue
            }
        }
    }

    async fn interrupt(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        reason: InterruptReason,
        backoff: Duration,
        items_at_start: u64,
    ) -> RunReport {
        self.interrupt_with(ctx, pos, reason, backoff, None, items_at_start)
            .await
    }

    /// [`Runner::interrupt`], storing `error` as the job's last error (a fault
    /// outside the job: say why it went back to its queue).
    async fn interrupt_with(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        reason: InterruptReason,
        backoff: Duration,
        error: Option<String>,
        items_at_start: u64,
    ) -> RunReport {
        let run_at = now_millis().saturating_add(duration_millis(backoff));
        let outcome = Outcome::Interrupted {
            reason,
            run_at,
            error,
        };
        let report = self.release(pos, outcome, items_at_start).await;
        if matches!(report.end, RunEnd::Interrupted(_)) {
            guard_value(self.job.on_interrupt(ctx, reason)).await;
        }
        report
    }

    /// Handles an error from the job's code: checkpoint the cursor before the failing
    /// item, then retry or fail.
    async fn error(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        error: JobError,
        items_at_start: u64,
    ) -> RunReport {
        self.error_at(ctx, pos, error, FailedAt::default(), items_at_start)
            .await
    }

    /// Ends the run with `error`, which happened where `at` says: the item (when the
    /// work failed on one) and a panic's backtrace are written with it.
    async fn error_at(
        &self,
        ctx: &JobContext<J::Params>,
        pos: &Position<J::Cursor>,
        error: JobError,
        at: FailedAt,
        items_at_start: u64,
    ) -> RunReport {
        if let JobError::Unavailable(delay, _) = &error {
            tracing::warn!(
                job = self.id(),
                kind = J::KIND,
                error = %error.chain(),
                retry_in = ?delay,
                "job interrupted: something outside it is unavailable (no attempt used)"
            );
            let why = format!(
                "interrupted, no attempt used: something outside the job is unavailable: {}",
                error.chain()
            );
            return self
                .interrupt_with(
                    ctx,
                    pos,
                    InterruptReason::Unavailable,
                    *delay,
                    Some(why),
                    items_at_start,
                )
                .await;
        }
        let record = &self.env.claimed.job;
        let attempt = record.attempts + 1;
        let chain = error.chain();
        let outcome = match &error {
            JobError::Fatal(_) => Outcome::Failed {
                error: format!("fatal error (no retry): {chain}"),
            },
            _ if attempt >= record.max_attempts => Outcome::Failed {
                error: format!(
                    "{chain} (attempt {attempt} of {}; no attempts left: fix the cause, then retry job {} (the `retry` command or the dashboard) to resume from the last checkpoint)",
                    record.max_attempts, record.id
                ),
            },
            JobError::RetryAfter(delay, _) => Outcome::Retry {
                error: format!("{chain} (attempt {attempt} of {})", record.max_attempts),
                run_at: now_millis().saturating_add(duration_millis(*delay)),
            },
            JobError::Retryable(_) | JobError::Unavailable(..) => Outcome::Retry {
                error: format!("{chain} (attempt {attempt} of {})", record.max_attempts),
                run_at: now_millis().saturating_add(duration_millis(retry_delay(
                    attempt,
                    self.env.settings.retry_base,
                    self.env.settings.retry_max,
                ))),
            },
        };
        tracing::warn!(job = self.id(), kind = J::KIND, error = %chain, "job error");
        let failure = Failure {
            item: at.item,
            attempt,
            worker: record.worker_id.clone().unwrap_or_default(),
            at: now_millis(),
            backtrace: at.backtrace,
        };
        if let Err(e) = self
            .env
            .store
            .job_note_failure(self.id(), self.token(), &failure)
            .await
        {
            // the release below writes the error itself, or finds the lease lost
            tracing::warn!(job = self.id(), error = %e, "could not record where the run failed");
        }
        let report = self.release(pos, outcome, items_at_start).await;
        guard_value(self.job.on_error(ctx, &error)).await;
        report
    }

    async fn fail_with(
        &self,
        pos: &Position<J::Cursor>,
        message: String,
        items_at_start: u64,
    ) -> RunReport {
        self.release(pos, Outcome::Failed { error: message }, items_at_start)
            .await
    }

    /// Fails a job whose stored data cannot even be decoded; the stored cursor and
    /// progress are left untouched.
    async fn fail_unstarted(&self, message: String) -> RunReport {
        tracing::error!(job = self.id(), kind = J::KIND, error = %message, "job cannot start");
        let outcome = Outcome::Failed { error: message };
        let end = self.release_with(None, &outcome).await;
        RunReport { end, items: 0 }
    }

    /// Counts the items `progress` made durable since the last accepted write.
    fn made_durable(&self, progress: &Progress) {
        let before = self.env.live.durable().items_done;
        telemetry::items_processed(J::KIND, progress.items_done.saturating_sub(before));
    }

    fn progress(&self, pos: &Position<J::Cursor>) -> Result<Progress, String> {
        let cursor = match &pos.cursor {
            None => self.env.claimed.job.cursor.clone(),
            Some(c) => Some(serde_json::to_value(c).map_err(|e| {
                format!(
                    "the cursor of job kind `{}` does not serialize to JSON: {e}",
                    J::KIND
                )
            })?),
        };
        Ok(Progress {
            cursor,
            items_done: pos.items_done,
            items_total: self.env.live.items_total(),
            running_ms: pos.base_running_ms + pos.started.elapsed().as_millis() as u64,
        })
    }

    async fn release(
        &self,
        pos: &Position<J::Cursor>,
        outcome: Outcome,
        items_at_start: u64,
    ) -> RunReport {
        let items = pos.items_done - items_at_start;
        let progress = match self.progress(pos) {
            Ok(p) => p,
            Err(message) => {
                let end = self
                    .release_with(None, &Outcome::Failed { error: message })
                    .await;
                return RunReport { end, items };
            }
        };
        let end = self.release_with(Some(&progress), &outcome).await;
        if !matches!(end, RunEnd::LeaseLost | RunEnd::ReleaseFailed) {
            self.made_durable(&progress);
            self.env.live.set_durable(progress);
        }
        if end == RunEnd::Failed {
            self.after_partition_failed().await;
        }
        RunReport { end, items }
    }

    /// A partition failed for good: apply the kind's [`PartitionFailure`] policy.
    async fn after_partition_failed(&self) {
        let Some(parent) = self.env.claimed.job.parent_id else {
            return;
        };
        if self.env.settings.partition_failure != PartitionFailure::CancelOthers {
            return;
        }
        let siblings = match self.env.store.job_partitions(parent).await {
            Ok(siblings) => siblings,
            Err(error) => {
                tracing::warn!(job = self.id(), parent, %error, "could not list the partitions to cancel");
                return;
            }
        };
        for sibling in siblings.iter().filter(|s| !s.state.is_finished()) {
            if let Err(error) = self.env.store.job_cancel(sibling.id).await {
                tracing::warn!(job = sibling.id, %error, "could not cancel a partition");
            }
        }
        tracing::warn!(
            job = self.id(),
            parent,
            "a partition failed; cancelled the others (PartitionFailure::CancelOthers)"
        );
    }

    /// Writes the release, retrying a failing store (a full disk, a restarting
    /// server, a write lock held by another process) with backoff: for a lease, and
    /// beyond it, up to [`RELEASE_RETRY_FOR`], unless the worker is shutting down.
    /// Meanwhile this worker's rescuer stands aside (the job is not dead, its
    /// release is late), so a store back within that time gets the release and the
    /// job no crash and no attempt: an outage is not the job's fault. Another
    /// worker's rescuer may requeue it once the lease expired; the release is then
    /// rejected by the fence.
    async fn release_with(&self, progress: Option<&Progress>, outcome: &Outcome) -> RunEnd {
        self.supervisor_done.cancel();
        // The work is over: the worker may start another job while this is written;
        // unless the job goes straight back to its queue (a time slice, a shutdown):
        // then the next claim must see it claimable, or a job of lower priority would
        // take its turn.
        let requeued = matches!(
            outcome,
            Outcome::Interrupted { run_at, .. } if *run_at <= now_millis()
        );
        if !requeued {
            self.env.slot.free();
        }
        let mut delay = Duration::from_millis(50);
        let started = tokio::time::Instant::now();
        let lease_end = started + self.env.settings.lease;
        let deadline = started + self.env.settings.lease.max(RELEASE_RETRY_FOR);
        // A lease already at risk (not renewed for half of it: the store is slow or
        // away) may expire while this release is in flight: from now on this
        // worker's rescuer must not take the job for dead.
        let mut retrying = (self.signals.since_renewal() >= self.env.settings.lease / 2)
            .then(|| self.env.releaser.retry_guard());
        for attempt in 1.. {
            let release = Release {
                id: self.id(),
                token: self.token(),
                progress: progress.cloned(),
                outcome: outcome.clone(),
            };
            match self.env.releaser.release(release).await {
                Ok(()) => return RunEnd::from_outcome(outcome),
                Err(Error::LeaseLost { .. }) => {
                    tracing::warn!(job = self.id(), "release rejected: lease lost");
                    return RunEnd::LeaseLost;
                }
                Err(error) => {
                    tracing::warn!(job = self.id(), %error, attempt, "release failed");
                    retrying.get_or_insert_with(|| self.env.releaser.retry_guard());
                    let now = tokio::time::Instant::now();
                    let stopping = self.env.shutdown.is_cancelled() && now >= lease_end;
                    if now + delay >= deadline || stopping {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        RunEnd::ReleaseFailed
    }

    /// Computes the total beside the iteration, bounded in time.
    fn spawn_total(&self, params: &Value) {
        let Ok(params) = decode_params::<J>(params) else {
            return;
        };
        let job = Arc::clone(&self.job);
        let live = Arc::clone(&self.env.live);
        let limit = self.env.settings.total_timeout;
        let id = self.id();
        let partition = self.env.claimed.job.parent_id.is_some();
        let task = tokio::spawn(async move {
            let total = AssertUnwindSafe(job.total(&params)).catch_unwind();
            match tokio::time::timeout(limit, total).await {
                Ok(Ok(Ok(Some(total)))) => live.set_items_total(total),
                Ok(Ok(Ok(None))) => {
                    if partition {
                        no_total_for_partitions::<J>();
                    }
                }
                Ok(Ok(Err(e))) => {
                    tracing::warn!(job = id, error = %e, "computing the total failed")
                }
                Ok(Err(panic)) => {
                    tracing::warn!(job = id, panic = %panic_message(&*panic), "computing the total panicked")
                }
                Err(_) => {
                    tracing::warn!(
                        job = id,
                        ?limit,
                        "computing the total timed out; progress shows no total"
                    )
                }
            }
        });
        self.env.live.set_total_task(task);
    }
}

/// Says once per kind and process that a partitioned kind without a total is never
/// split dynamically: idle workers only split partitions whose remaining items
/// are known, so without this line their idle slots would stay idle in silence.
fn no_total_for_partitions<J: Job>() {
    static SAID: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.contains(&J::KIND) {
        return;
    }
    said.push(J::KIND);
    tracing::warn!(
        kind = J::KIND,
        "job kind `{}` has no `Job::total`: its partitions are never split dynamically \
         (idle workers split only partitions whose remaining items are known); implement \
         `total` (an estimate will do) to rebalance them",
        J::KIND
    );
}

/// Items between two reads of the clock in the run loop.
const YIELD_CHECK_EVERY: u32 = 32;
/// Longest the run loop keeps its thread without yielding to the scheduler.
const YIELD_AFTER: Duration = Duration::from_millis(2);

/// Runs a hook, turning a panic into a retryable error.
async fn guard<F, T>(fut: F) -> Result<T, JobError>
where
    F: std::future::Future<Output = Result<T, JobError>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(JobError::retryable(format!(
            "a hook panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

/// Runs a hook whose value cannot fail; a panic is logged and gives the default.
async fn guard_value<F, T>(fut: F) -> T
where
    F: std::future::Future<Output = T>,
    T: Default,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(v) => v,
        Err(panic) => {
            tracing::error!(panic = %panic_message(&*panic), "a job hook panicked");
            T::default()
        }
    }
}

fn cursor_text<C: serde::Serialize>(cursor: &Option<C>) -> String {
    match cursor {
        None => "(start)".to_string(),
        Some(c) => serde_json::to_string(c).unwrap_or_else(|_| "(unserializable)".to_string()),
    }
}

/// Where a run's error happened, for its [`Failure`].
#[derive(Default)]
struct FailedAt {
    /// The cursor of the item the work failed on.
    item: Option<serde_json::Value>,
    /// A panic's backtrace.
    backtrace: Option<String>,
}

impl FailedAt {
    /// The work failed on the item whose cursor is `cursor`.
    fn item<C: serde::Serialize>(cursor: &C, backtrace: Option<String>) -> Self {
        FailedAt {
            item: serde_json::to_value(cursor).ok(),
            backtrace,
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}
