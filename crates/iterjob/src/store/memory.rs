//! An in-memory [`Store`], for unit tests of jobs and of the runtime.
//!
//! It keeps every job in a `BTreeMap` behind a [`std::sync::Mutex`] and follows the
//! [`Store`] contract exactly (the conformance suite in `iterjob-testkit` runs against
//! it), including fencing, lease expiry and unique keys. Nothing survives the process,
//! and the lock is never held across an `await`.
//!
//! Choices the trait leaves open, made the same way by every iterjob store:
//!
//! * `job_claim` with an empty `kinds` or `queues` list claims nothing (no kind or
//!   queue was asked for).
//! * A write with a token for a job that does not exist fails with
//!   [`Error::JobNotFound`]; a job that exists but is not running, or runs under
//!   another token, fails with [`Error::LeaseLost`].
//! * `job_checkpoint` and `job_release` with progress write the cursor as given (a
//!   `None` cursor means "from the beginning") and reset `crashes` when `items_done`
//!   grew.
//! * A release clears `pause_requested` and `cancel_requested` when the job ends
//!   paused or finished; an interruption or a retry keeps them, so the next run sees
//!   the request.
//! * `job_pause` of a paused job returns it unchanged; `job_resume` of a running job
//!   with no pause pending is an [`Error::InvalidTransition`].
//! * `job_retry` of a job whose unique key is held by another unfinished job is an
//!   [`Error::InvalidTransition`] (at most one unfinished job per key).
//! * Rate-limit buckets (`rate_acquire`) belong to the store and its clones: two
//!   separate `MemoryStore`s do not share them.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::schedule::{ScheduleState, ScheduleTick, TickOutcome};
use crate::store::PruneBatch;
use crate::store::rate::RateBuckets;
use crate::store::rules::{self, AdminAction, AdminStep, UNIQUE_KEY_HELD, admin_step};
use crate::store::{
    ClaimRequest, Claimed, Control, Failure, InterruptReason, JobEvent, JobEventKind, JobFilter,
    JobId, JobRecord, JobState, MAX_EVENTS, Millis, NewJob, Outcome, PartitionStates, Progress,
    QueuePause, QueuePauseMode, QueueRow, Rescued, RunToken, Split, SplitRequest, Store,
    ThrottleSwitch, check_queue_name, duration_millis, now_millis, parent_outcome,
    parent_running_ms, parent_shown_state, release_event, shown_by_split_parents,
};
use serde_json::Value;

/// How many jobs `job_list` returns when the filter sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// An in-memory [`Store`]: fast, isolated, gone when dropped. Clones share the same
/// jobs, so a test can hand one clone to a runtime and inspect jobs through another.
///
/// ```
/// use iterjob::store::{MemoryStore, NewJob, Store};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let ids = store
///     .job_insert_many(&[NewJob::new("reindex", serde_json::json!({"shard": 3}))])
///     .await?;
/// let job = store.job_get(ids[0]).await?.expect("just inserted");
/// assert_eq!(job.kind, "reindex");
/// # Ok::<(), iterjob::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    available: Arc<tokio::sync::Notify>,
    /// Rate-limit buckets of this store (shared by its clones).
    rates: Arc<RateBuckets>,
}

#[derive(Debug, Default)]
struct Inner {
    last_id: JobId,
    jobs: BTreeMap<JobId, Entry>,
    /// Every job's history, oldest first (see [`Store::job_events`]).
    events: Vec<JobEvent>,
    /// The paused queues, by name.
    pauses: BTreeMap<String, QueuePause>,
    /// Named leases: holder and expiry.
    leases: BTreeMap<String, (String, Millis)>,
    /// Schedules' last ticks and jobs.
    schedules: BTreeMap<String, ScheduleState>,
    /// Throttle switches by (queue, kind) scope.
    throttles: BTreeMap<(Option<String>, Option<String>), ThrottleSwitch>,
    /// Workers' last beats, by id.
    workers: BTreeMap<String, super::WorkerPresence>,
}

#[derive(Debug)]
struct Entry {
    record: JobRecord,
    /// The current run's fencing token, while running.
    token: Option<RunToken>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written in a way
        // that matters to tests; keep going rather than cascade the panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Inserts one job (or finds the unfinished job holding its unique key).
    fn insert(&mut self, job: &NewJob, now: Millis) -> JobId {
        if let Some(key) = &job.unique_key
            && let Some(existing) = self.unique_holder(key, None)
        {
            return existing;
        }
        self.last_id += 1;
        let id = self.last_id;
        let record = new_record(id, job, now);
        self.jobs.insert(
            id,
            Entry {
                record,
                token: None,
            },
        );
        id
    }

    /// Records an event about `record` as it is now (after the change).
    fn record_event(
        &mut self,
        record: &JobRecord,
        kind: JobEventKind,
        reason: Option<InterruptReason>,
        error: Option<&str>,
        now: Millis,
    ) {
        let id = self.events.last().map_or(1, |e| e.id + 1);
        self.events.push(JobEvent {
            id,
            job_id: record.id,
            at: now,
            kind,
            state: record.state,
            reason,
            cursor: record.cursor.clone(),
            items_done: record.items_done,
            error: error.map(str::to_string),
        });
    }

    /// Records an operator's action on job `id`, as the job is now.
    fn record_action(&mut self, id: JobId, kind: JobEventKind, now: Millis) {
        if let Some(entry) = self.jobs.get(&id) {
            let record = entry.record.clone();
            self.record_event(&record, kind, None, None, now);
        }
    }

    fn entry_mut(&mut self, id: JobId) -> Result<&mut Entry> {
        self.jobs.get_mut(&id).ok_or(Error::JobNotFound(id))
    }

    /// The running job `id` if `token` is its current run's token.
    fn fenced(&mut self, id: JobId, token: RunToken) -> Result<&mut JobRecord> {
        let entry = self.entry_mut(id)?;
        if entry.record.state != JobState::Running || entry.token != Some(token) {
            return Err(Error::LeaseLost { job: id });
        }
        Ok(&mut entry.record)
    }

    /// The ids of `parent`'s partitions, in id order.
    fn children(&self, parent: JobId) -> Vec<JobId> {
        self.jobs
            .values()
            .filter(|e| e.record.parent_id == Some(parent))
            .map(|e| e.record.id)
            .collect()
    }

    /// A copy of the job as reads report it: a split parent with its partitions'
    /// summed progress.
    fn view(&self, record: &JobRecord) -> JobRecord {
        let mut view = record.clone();
        if record.partitions.is_none() {
            return view;
        }
        let children: Vec<&JobRecord> = self
            .jobs
            .values()
            .map(|e| &e.record)
            .filter(|r| r.parent_id == Some(record.id))
            .collect();
        if children.is_empty() {
            return view;
        }
        view.items_done = children.iter().map(|c| c.items_done).sum();
        view.items_total = children.iter().map(|c| c.items_total).sum::<Option<u64>>();
        view.running_ms = parent_running_ms(record, now_millis());
        view.state =
            parent_shown_state(record.state, PartitionStates::of(children.iter().copied()));
        view
    }

    /// Finishes a split parent whose partitions have all finished: completed if they
    /// all completed, failed otherwise.
    fn finalize(&mut self, parent: JobId, now: Millis) {
        let children: Vec<JobRecord> = self
            .jobs
            .values()
            .filter(|e| e.record.parent_id == Some(parent))
            .map(|e| e.record.clone())
            .collect();
        let Some((state, error)) = parent_outcome(&children) else {
            return;
        };
        let Some(entry) = self.jobs.get_mut(&parent) else {
            return;
        };
        let record = &mut entry.record;
        if !matches!(record.state, JobState::Running | JobState::Paused) {
            return;
        }
        if error.is_some() {
            record.last_error = error;
        }
        finish(record, state, now);
    }

    /// The id of the unfinished job holding `key`, other than `except`.
    fn unique_holder(&self, key: &str, except: Option<JobId>) -> Option<JobId> {
        self.jobs
            .values()
            .map(|e| &e.record)
            .find(|r| {
                Some(r.id) != except
                    && !r.state.is_finished()
                    && r.unique_key.as_deref() == Some(key)
            })
            .map(|r| r.id)
    }
}

fn lease_until(now: Millis, lease: Duration) -> Millis {
    now.saturating_add(duration_millis(lease))
}

fn control(record: &JobRecord) -> Control {
    Control {
        pause_requested: record.pause_requested,
        cancel_requested: record.cancel_requested,
        split_requested: record.split_requested,
    }
}

/// A new job record, queued.
pub(crate) fn new_record(id: JobId, job: &NewJob, now: Millis) -> JobRecord {
    JobRecord {
        id,
        kind: job.kind.clone(),
        queue: job.queue.clone(),
        priority: job.priority,
        state: JobState::Queued,
        params: job.params.clone(),
        cursor: job.cursor.clone(),
        items_done: 0,
        items_total: None,
        attempts: 0,
        max_attempts: job.max_attempts,
        interruptions: 0,
        crashes: 0,
        runs: 0,
        last_error: None,
        unique_key: job.unique_key.clone(),
        created_at: now,
        run_at: job.run_at.unwrap_or(now),
        started_at: None,
        finished_at: None,
        checkpointed_at: None,
        running_ms: 0,
        worker_id: None,
        lease_expires_at: None,
        pause_requested: false,
        cancel_requested: false,
        parent_id: None,
        partitions: job.partitions,
        split_requested: false,
        trace_context: job.trace_context.clone(),
        last_failure: None,
    }
}

/// A partition of `parent` with `params`, in `state`.
fn child_record(
    id: JobId,
    parent: &JobRecord,
    params: Value,
    state: JobState,
    now: Millis,
) -> JobRecord {
    let mut job = NewJob::new(parent.kind.clone(), params)
        .queue(parent.queue.clone())
        .priority(parent.priority)
        .max_attempts(parent.max_attempts);
    job.partitions = None;
    job.trace_context = parent.trace_context.clone();
    let mut record = new_record(id, &job, now);
    record.parent_id = Some(parent.id);
    record.state = state;
    if state.is_finished() {
        record.finished_at = Some(now);
    }
    record
}

fn write_progress(record: &mut JobRecord, progress: &Progress, now: Millis) {
    if progress.items_done > record.items_done {
        record.crashes = 0;
    }
    record.cursor = progress.cursor.clone();
    record.items_done = progress.items_done;
    record.items_total = progress.items_total;
    record.running_ms = progress.running_ms;
    record.checkpointed_at = Some(now);
}

/// Ends the current run: no token, worker or lease any more.
fn end_run(entry: &mut Entry) {
    entry.token = None;
    entry.record.worker_id = None;
    entry.record.lease_expires_at = None;
}

fn clear_requests(record: &mut JobRecord) {
    record.pause_requested = false;
    record.cancel_requested = false;
    record.split_requested = false;
}

fn finish(record: &mut JobRecord, state: JobState, now: Millis) {
    record.state = state;
    record.finished_at = Some(now);
    clear_requests(record);
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        let now = now_millis();
        let mut inner = self.lock();
        let ids = jobs.iter().map(|job| inner.insert(job, now)).collect();
        drop(inner);
        self.available.notify_waiters();
        Ok(ids)
    }

    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if request.limit == 0 || request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let kinds: HashSet<&str> = request.kinds.iter().map(String::as_str).collect();
        let queues: HashSet<&str> = request.queues.iter().map(String::as_str).collect();
        let mut inner = self.lock();
        let mut candidates: Vec<(i32, Millis, JobId)> = inner
            .jobs
            .values()
            .map(|e| &e.record)
            .filter(|r| matches!(r.state, JobState::Queued | JobState::Retrying))
            .filter(|r| r.run_at <= now)
            .filter(|r| kinds.contains(r.kind.as_str()) && queues.contains(r.queue.as_str()))
            .filter(|r| !inner.pauses.contains_key(&r.queue))
            .map(|r| (r.priority, r.run_at, r.id))
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        candidates.truncate(request.limit);

        let mut claimed = Vec::with_capacity(candidates.len());
        for (_, _, id) in candidates {
            let entry = inner.entry_mut(id)?;
            let token = loop {
                let token = RunToken::random();
                if entry.token != Some(token) {
                    break token;
                }
            };
            entry.token = Some(token);
            let record = &mut entry.record;
            record.state = JobState::Running;
            record.runs += 1;
            record.started_at.get_or_insert(now);
            record.worker_id = Some(request.worker_id.clone());
            record.lease_expires_at = Some(lease_until(now, request.lease));
            claimed.push(Claimed {
                job: record.clone(),
                token,
            });
        }
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        let now = now_millis();
        let mut inner = self.lock();
        let record = inner.fenced(id, token)?;
        record.lease_expires_at = Some(lease_until(now, lease));
        Ok(control(record))
    }

    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control> {
        let now = now_millis();
        let mut inner = self.lock();
        let record = inner.fenced(id, token)?;
        write_progress(record, progress, now);
        record.lease_expires_at = Some(lease_until(now, lease));
        Ok(control(record))
    }

    async fn job_note_failure(&self, id: JobId, token: RunToken, failure: &Failure) -> Result<()> {
        let mut inner = self.lock();
        let record = inner.fenced(id, token)?;
        record.last_failure = Some(failure.clone());
        Ok(())
    }

    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()> {
        let now = now_millis();
        let mut inner = self.lock();
        inner.fenced(id, token)?;
        let entry = inner.entry_mut(id)?;
        end_run(entry);
        let record = &mut entry.record;
        if let Some(progress) = progress {
            write_progress(record, progress, now);
        }
        match outcome {
            Outcome::Completed => finish(record, JobState::Completed, now),
            Outcome::Interrupted { run_at, error, .. } => {
                record.state = JobState::Queued;
                record.run_at = *run_at;
                record.interruptions += 1;
                if let Some(error) = error {
                    record.last_error = Some(error.clone());
                }
            }
            Outcome::Paused => {
                record.state = JobState::Paused;
                clear_requests(record);
            }
            Outcome::Cancelled => finish(record, JobState::Cancelled, now),
            Outcome::Retry { error, run_at } => {
                record.state = JobState::Retrying;
                record.run_at = *run_at;
                record.attempts += 1;
                record.last_error = Some(error.clone());
            }
            Outcome::Failed { error } => {
                record.attempts += 1;
                record.last_error = Some(error.clone());
                finish(record, JobState::Failed, now);
            }
        }
        record.split_requested = false;
        let record = record.clone();
        if let Some((kind, reason, error)) = release_event(outcome) {
            inner.record_event(&record, kind, reason, error, now);
        }
        if record.state.is_finished()
            && let Some(parent) = record.parent_id
        {
            inner.finalize(parent, now);
        }
        Ok(())
    }

    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        let now = now_millis();
        let mut inner = self.lock();
        let mut rescued = Vec::new();
        let mut parents = Vec::new();
        for entry in inner.jobs.values_mut() {
            let record = &entry.record;
            // a split parent is running without a token: no worker holds it
            let expired = record.state == JobState::Running
                && entry.token.is_some()
                && record.lease_expires_at.is_none_or(|at| at < now);
            if !expired {
                continue;
            }
            end_run(entry);
            let record = &mut entry.record;
            record.crashes += 1;
            record.attempts += 1;
            if record.crashes >= max_crashes {
                record.last_error = Some(format!(
                    "worker lost its lease {} times without progress (it crashed, was killed, \
                     or hung); the job may be crashing its worker",
                    record.crashes
                ));
                finish(record, JobState::Failed, now);
            } else if record.attempts >= record.max_attempts {
                record.last_error = Some(format!(
                    "worker lost its lease (it crashed, was killed, or hung) and the job has \
                     used all {} attempts",
                    record.max_attempts
                ));
                finish(record, JobState::Failed, now);
            } else {
                record.state = JobState::Queued;
                record.run_at = now;
            }
            record.split_requested = false;
            if record.state.is_finished()
                && let Some(parent) = record.parent_id
            {
                parents.push(parent);
            }
            rescued.push(Rescued {
                id: record.id,
                state: record.state,
            });
        }
        for r in &rescued {
            let record = inner.jobs[&r.id].record.clone();
            let error = (record.state == JobState::Failed)
                .then(|| record.last_error.clone())
                .flatten();
            inner.record_event(&record, JobEventKind::Rescued, None, error.as_deref(), now);
        }
        for parent in parents {
            inner.finalize(parent, now);
        }
        Ok(rescued)
    }

    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let inner = self.lock();
        Ok(inner.jobs.get(&id).map(|e| inner.view(&e.record)))
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let inner = self.lock();
        let upper = filter.before_id.unwrap_or(JobId::MAX);
        Ok(inner
            .jobs
            .range(..upper)
            .rev()
            .map(|(_, e)| &e.record)
            // stored in the state listed, or a split parent (stored `running`) that
            // may show it
            .filter(|r| {
                filter.state.is_none_or(|s| {
                    r.state == s
                        || (shown_by_split_parents(s)
                            && r.state == JobState::Running
                            && r.is_parent())
                })
            })
            .filter(|r| filter.kind.as_ref().is_none_or(|k| &r.kind == k))
            .filter(|r| filter.queue.as_ref().is_none_or(|q| &r.queue == q))
            .filter(|r| !filter.top_level || r.parent_id.is_none())
            .map(|r| inner.view(r))
            // a split parent's shown state follows its partitions
            .filter(|r| filter.state.is_none_or(|s| r.state == s))
            .take(limit)
            .collect())
    }

    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let inner = self.lock();
        Ok(JobState::ALL
            .into_iter()
            .map(|state| {
                let n = inner
                    .jobs
                    .values()
                    .filter(|e| e.record.state == state)
                    .count();
                (state, n as u64)
            })
            .collect())
    }

    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let all = self.job_count_by_state().await?;
        let inner = self.lock();
        let partitions = inner
            .jobs
            .values()
            .filter_map(|e| {
                let parent = inner.jobs.get(&e.record.parent_id?)?;
                Some((parent.record.id, parent.record.state, e.record.state, 1))
            })
            .collect::<Vec<_>>();
        Ok(super::top_level_counts(all, partitions))
    }

    async fn worker_beat(&self, presence: &super::WorkerPresence) -> Result<()> {
        let mut inner = self.lock();
        let forget_before = presence.beat_at - super::WORKER_FORGET_MS;
        inner.workers.retain(|_, w| w.beat_at >= forget_before);
        inner.workers.insert(presence.id.clone(), presence.clone());
        Ok(())
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        self.lock().workers.remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<super::WorkerPresence>> {
        let forget_before = now_millis() - super::WORKER_FORGET_MS;
        Ok(self
            .lock()
            .workers
            .values()
            .filter(|w| w.beat_at >= forget_before)
            .cloned()
            .collect())
    }

    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        let mut inner = self.lock();
        let children = inner.children(id);
        let record = &mut inner.entry_mut(id)?.record;
        let already = record.state == JobState::Paused;
        if !children.is_empty() && record.state == JobState::Running {
            record.state = JobState::Paused;
        } else {
            pause_one(record)?;
        }
        for child in children {
            let child = &mut inner.entry_mut(child)?.record;
            if !child.state.is_finished() {
                pause_one(child)?;
            }
        }
        if !already {
            inner.record_action(id, JobEventKind::OperatorPause, now_millis());
        }
        let record = &inner.jobs[&id].record;
        Ok(inner.view(record))
    }

    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        let now = now_millis();
        let mut inner = self.lock();
        let children = inner.children(id);
        let record = &mut inner.entry_mut(id)?.record;
        if !children.is_empty() && matches!(record.state, JobState::Paused | JobState::Running) {
            record.state = JobState::Running;
            for child in children {
                let child = &mut inner.entry_mut(child)?.record;
                if child.state == JobState::Paused
                    || (child.state == JobState::Running && child.pause_requested)
                {
                    resume_one(child, now)?;
                }
            }
        } else {
            resume_one(record, now)?;
        }
        inner.record_action(id, JobEventKind::OperatorResume, now);
        self.available.notify_waiters();
        let record = &inner.jobs[&id].record;
        Ok(inner.view(record))
    }

    async fn job_cancel(&self, id: JobId) -> Result<JobRecord> {
        let now = now_millis();
        let mut inner = self.lock();
        let children = inner.children(id);
        let record = &mut inner.entry_mut(id)?.record;
        if !children.is_empty() && !record.state.is_finished() {
            finish(record, JobState::Cancelled, now);
        } else {
            cancel_one(record, now)?;
        }
        for child in children {
            let child = &mut inner.entry_mut(child)?.record;
            if !child.state.is_finished() {
                cancel_one(child, now)?;
            }
        }
        inner.record_action(id, JobEventKind::OperatorCancel, now);
        let record = &inner.jobs[&id].record;
        let parent = record.parent_id.filter(|_| record.state.is_finished());
        if let Some(parent) = parent {
            inner.finalize(parent, now);
        }
        let record = &inner.jobs[&id].record;
        Ok(inner.view(record))
    }

    async fn job_delete(&self, id: JobId) -> Result<u64> {
        let mut inner = self.lock();
        let record = inner.entry_mut(id)?.record.clone();
        let children: Vec<JobRecord> = inner
            .children(id)
            .into_iter()
            .map(|c| inner.jobs[&c].record.clone())
            .collect();
        crate::store::rules::delete_check(&record, &children)?;
        let gone: Vec<JobId> = std::iter::once(id)
            .chain(children.iter().map(|c| c.id))
            .collect();
        for job in &gone {
            inner.jobs.remove(job);
        }
        inner.events.retain(|e| !gone.contains(&e.job_id));
        Ok(gone.len() as u64)
    }

    async fn job_prune(
        &self,
        state: JobState,
        finished_before: Millis,
        after: JobId,
        limit: usize,
    ) -> Result<PruneBatch> {
        crate::store::rules::prune_check(state)?;
        let mut inner = self.lock();
        let due: Vec<JobId> = inner
            .jobs
            .range(after.saturating_add(1)..)
            .map(|(_, e)| &e.record)
            .filter(|r| prunable(r, state, finished_before))
            .map(|r| r.id)
            .take(limit)
            .collect();
        let mut gone: Vec<JobId> = due.clone();
        for &id in &due {
            gone.extend(inner.children(id));
        }
        for job in &gone {
            inner.jobs.remove(job);
        }
        inner.events.retain(|e| !gone.contains(&e.job_id));
        Ok(PruneBatch {
            deleted: due.len() as u64,
            last_id: due.last().copied(),
        })
    }

    async fn job_prunable(&self, state: JobState, finished_before: Millis) -> Result<u64> {
        crate::store::rules::prune_check(state)?;
        let inner = self.lock();
        Ok(inner
            .jobs
            .values()
            .filter(|e| prunable(&e.record, state, finished_before))
            .count() as u64)
    }

    async fn job_wait_available(&self) {
        self.available.notified().await;
    }

    async fn schedule_tick(&self, tick: &ScheduleTick) -> Result<TickOutcome> {
        let now = now_millis();
        let mut inner = self.lock();
        let current = inner.schedules.get(&tick.name).map(|s| s.last_tick);
        if current != tick.previous {
            return Ok(TickOutcome::Stale);
        }
        let last_job = inner.schedules.get(&tick.name).and_then(|s| s.last_job);
        let state = inner
            .schedules
            .entry(tick.name.clone())
            .or_insert_with(|| ScheduleState {
                name: tick.name.clone(),
                last_tick: tick.tick,
                last_job: None,
            });
        state.last_tick = tick.tick;
        let Some(job) = &tick.job else {
            return Ok(TickOutcome::Recorded);
        };
        if tick.skip_if_running
            && let Some(previous) = last_job
            && inner
                .jobs
                .get(&previous)
                .is_some_and(|e| !e.record.state.is_finished())
        {
            return Ok(TickOutcome::SkippedRunning(previous));
        }
        let id = inner.insert(job, now);
        if let Some(state) = inner.schedules.get_mut(&tick.name) {
            state.last_job = Some(id);
        }
        drop(inner);
        self.available.notify_waiters();
        Ok(TickOutcome::Enqueued(id))
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_millis();
        let mut inner = self.lock();
        let lease = inner
            .leases
            .entry(name.to_string())
            .or_insert_with(|| (holder.to_string(), now));
        if lease.0 == holder || lease.1 <= now {
            *lease = (holder.to_string(), lease_until(now, ttl));
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        let mut inner = self.lock();
        if inner.leases.get(name).is_some_and(|(h, _)| h == holder) {
            inner.leases.remove(name);
        }
        Ok(())
    }

    async fn queue_pause(&self, queue: &str, mode: QueuePauseMode) -> Result<QueuePause> {
        check_queue_name(queue)?;
        let now = now_millis();
        let mut inner = self.lock();
        let pause = inner
            .pauses
            .entry(queue.to_string())
            .or_insert_with(|| QueuePause {
                queue: queue.to_string(),
                since: now,
                mode,
            });
        pause.mode = mode;
        Ok(pause.clone())
    }

    async fn queue_resume(&self, queue: &str) -> Result<bool> {
        let was = self.lock().pauses.remove(queue).is_some();
        if was {
            self.available.notify_waiters();
        }
        Ok(was)
    }

    async fn queue_pauses(&self) -> Result<Vec<QueuePause>> {
        Ok(self.lock().pauses.values().cloned().collect())
    }

    async fn throttle_on(&self, switch: &ThrottleSwitch) -> Result<ThrottleSwitch> {
        switch.validate()?;
        let mut inner = self.lock();
        inner.throttles.retain(|_, s| s.is_on(switch.since));
        let scope = (switch.queue.clone(), switch.kind.clone());
        let stored = inner
            .throttles
            .entry(scope)
            .and_modify(|on| {
                on.until = switch.until;
                on.reason = switch.reason.clone();
            })
            .or_insert_with(|| switch.clone());
        Ok(stored.clone())
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool> {
        let scope = (queue.map(str::to_string), kind.map(str::to_string));
        let now = now_millis();
        let removed = self.lock().throttles.remove(&scope);
        Ok(removed.is_some_and(|s| s.is_on(now)))
    }

    async fn throttle_switches(&self, now: Millis) -> Result<Vec<ThrottleSwitch>> {
        Ok(self
            .lock()
            .throttles
            .values()
            .filter(|s| s.is_on(now))
            .cloned()
            .collect())
    }

    async fn queue_rows(&self, now: Millis) -> Result<Vec<QueueRow>> {
        let inner = self.lock();
        let split: HashSet<JobId> = inner
            .jobs
            .values()
            .filter_map(|e| e.record.parent_id)
            .collect();
        let mut rows: BTreeMap<(String, String, JobState), QueueRow> = BTreeMap::new();
        for record in inner.jobs.values().map(|e| &e.record) {
            if split.contains(&record.id) {
                continue;
            }
            let row = rows
                .entry((record.queue.clone(), record.kind.clone(), record.state))
                .or_insert_with(|| QueueRow {
                    queue: record.queue.clone(),
                    kind: record.kind.clone(),
                    state: record.state,
                    ..QueueRow::default()
                });
            row.jobs += 1;
            row.items_done += record.items_done;
            row.running_ms += record.running_ms;
            let claimable = matches!(record.state, JobState::Queued | JobState::Retrying)
                && record.run_at <= now;
            if claimable {
                row.claimable += 1;
                row.oldest_claimable = Some(
                    row.oldest_claimable
                        .map_or(record.run_at, |t| t.min(record.run_at)),
                );
            }
            if claimable || record.state == JobState::Running {
                match record.items_total {
                    Some(total) => {
                        row.active_items_left += total.saturating_sub(record.items_done);
                    }
                    None => row.active_without_total += 1,
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        let now = now_millis();
        let mut inner = self.lock();
        let key = inner.entry_mut(id)?.record.unique_key.clone();
        admin_step(AdminAction::Retry, &inner.entry_mut(id)?.record, false)?;
        if let Some(key) = key
            && inner.unique_holder(&key, Some(id)).is_some()
        {
            let record = &inner.entry_mut(id)?.record;
            return Err(rules::invalid(record, "retry", UNIQUE_KEY_HELD));
        }
        let children = inner.children(id);
        let record = &mut inner.entry_mut(id)?.record;
        retry_one(record, now);
        if !children.is_empty() {
            record.state = JobState::Running;
            for child in children {
                let child = &mut inner.entry_mut(child)?.record;
                if matches!(child.state, JobState::Failed | JobState::Cancelled) {
                    retry_one(child, now);
                }
            }
            inner.finalize(id, now);
        }
        inner.record_action(id, JobEventKind::OperatorRetry, now);
        self.available.notify_waiters();
        let record = &inner.jobs[&id].record;
        Ok(inner.view(record))
    }

    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>> {
        let now = now_millis();
        let mut inner = self.lock();
        let parent = inner.fenced(id, token)?.clone();
        if parent.partitions.is_none() {
            return Err(Error::Config(format!(
                "job {id} was not enqueued as a partitioned job; it cannot be split into partitions"
            )));
        }
        let mut ids = Vec::with_capacity(children.len());
        for params in children {
            inner.last_id += 1;
            let child = inner.last_id;
            let record = child_record(child, &parent, params.clone(), JobState::Queued, now);
            inner.jobs.insert(
                child,
                Entry {
                    record,
                    token: None,
                },
            );
            ids.push(child);
        }
        let entry = inner.entry_mut(id)?;
        end_run(entry);
        let record = &mut entry.record;
        record.split_requested = false;
        if ids.is_empty() {
            finish(record, JobState::Completed, now);
        } else if record.cancel_requested {
            finish(record, JobState::Cancelled, now);
        } else if record.pause_requested {
            record.state = JobState::Paused;
            clear_requests(record);
        }
        drop(inner);
        self.available.notify_waiters();
        Ok(ids)
    }

    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        let now = now_millis();
        let mut inner = self.lock();
        let record = inner.fenced(id, token)?;
        write_progress(record, progress, now);
        record.lease_expires_at = Some(lease_until(now, lease));
        record.split_requested = false;
        let Some(split) = split else {
            return Ok(None);
        };
        let Some(parent_id) = record.parent_id else {
            return Err(Error::Config(format!(
                "job {id} is not a partition of a partitioned job; only partitions can be split"
            )));
        };
        record.params = split.keep.clone();
        record.items_total = None;
        let parent = inner.entry_mut(parent_id)?.record.clone();
        let state = match parent.state {
            JobState::Paused => JobState::Paused,
            JobState::Cancelled | JobState::Completed | JobState::Failed => JobState::Cancelled,
            _ => JobState::Queued,
        };
        inner.last_id += 1;
        let child = inner.last_id;
        let record = child_record(child, &parent, split.give.clone(), state, now);
        inner.jobs.insert(
            child,
            Entry {
                record,
                token: None,
            },
        );
        drop(inner);
        self.available.notify_waiters();
        Ok(Some(child))
    }

    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        let kinds: HashSet<&str> = request.kinds.iter().map(String::as_str).collect();
        let queues: HashSet<&str> = request.queues.iter().map(String::as_str).collect();
        let mut inner = self.lock();
        let best = inner
            .jobs
            .values()
            .map(|e| &e.record)
            .filter(|r| r.state == JobState::Running && r.parent_id.is_some())
            .filter(|r| !r.split_requested && !r.pause_requested && !r.cancel_requested)
            .filter(|r| kinds.contains(r.kind.as_str()) && queues.contains(r.queue.as_str()))
            .filter_map(|r| {
                let left = r.items_total?.saturating_sub(r.items_done);
                (left >= request.min_remaining.max(2)).then_some((left, r.id))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let Some((_, id)) = best else {
            return Ok(None);
        };
        inner.entry_mut(id)?.record.split_requested = true;
        Ok(Some(id))
    }

    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        let inner = self.lock();
        Ok(inner
            .events
            .iter()
            .rev()
            .filter(|e| e.job_id == id)
            .take(limit.min(MAX_EVENTS))
            .cloned()
            .collect())
    }

    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        let inner = self.lock();
        Ok(inner
            .jobs
            .values()
            .map(|e| &e.record)
            .filter(|r| r.parent_id == Some(parent))
            .cloned()
            .collect())
    }

    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        Ok(self.rates.acquire(key, n, interval))
    }
}

fn pause_one(record: &mut JobRecord) -> Result<()> {
    match admin_step(AdminAction::Pause, record, false)? {
        AdminStep::Now => record.state = JobState::Paused,
        AdminStep::Requested => record.pause_requested = true,
        AdminStep::Unchanged | AdminStep::Cascade => {}
    }
    Ok(())
}

fn resume_one(record: &mut JobRecord, now: Millis) -> Result<()> {
    match admin_step(AdminAction::Resume, record, false)? {
        AdminStep::Now => {
            record.state = JobState::Queued;
            record.run_at = now;
            clear_requests(record);
        }
        AdminStep::Requested => record.pause_requested = false,
        AdminStep::Unchanged | AdminStep::Cascade => {}
    }
    Ok(())
}

fn cancel_one(record: &mut JobRecord, now: Millis) -> Result<()> {
    match admin_step(AdminAction::Cancel, record, false)? {
        AdminStep::Now => finish(record, JobState::Cancelled, now),
        AdminStep::Requested => record.cancel_requested = true,
        AdminStep::Unchanged | AdminStep::Cascade => {}
    }
    Ok(())
}

fn retry_one(record: &mut JobRecord, now: Millis) {
    record.state = JobState::Queued;
    record.run_at = now;
    record.attempts = 0;
    record.crashes = 0;
    record.finished_at = None;
    clear_requests(record);
}

/// A top-level job in `state` that finished before `before`.
fn prunable(record: &JobRecord, state: JobState, before: Millis) -> bool {
    record.parent_id.is_none()
        && record.state == state
        && record.finished_at.is_some_and(|at| at < before)
}
