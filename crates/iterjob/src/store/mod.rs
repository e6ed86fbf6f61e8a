//! The storage interface every backend implements, and the records it stores.
//!
//! A store only turns calls into storage operations: the runtime in this crate decides
//! *what* happens (retry or fail, how long to back off, when to checkpoint); a store
//! makes it durable and enforces the one rule it alone can enforce, **fencing**: every
//! write made on behalf of a run carries that run's [`RunToken`], and a store rejects
//! it with [`Error::LeaseLost`] unless the token still matches.
//!
//! The trait is an interface between this workspace's crates, not a stable API for
//! outsiders; the conformance suite in `iterjob-testkit` pins its behaviour, and every
//! store runs it.

mod events;
pub(crate) mod memory;
mod queues;
mod rate;
pub mod rules;
pub(crate) mod throttles;
mod workers;

pub use crate::schedule::{ScheduleState, ScheduleTick, TickOutcome};
pub use events::{JobEvent, JobEventKind, MAX_EVENTS, release_event};
pub use memory::MemoryStore;
pub use queues::{QueuePause, QueuePauseMode, QueueRow, QueueStats, summarize};
pub use rate::{Micros, now_micros, rate_cost_micros};
pub use throttles::ThrottleSwitch;
pub use workers::{WORKER_FORGET_MS, WorkerPresence, host_name};

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A job's id, assigned by the store.
pub type JobId = i64;

/// Milliseconds since the Unix epoch (UTC): the store's timestamp format.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Converts a duration to whole milliseconds, saturating.
pub fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The lifecycle state of a job.
///
/// ```text
/// queued ──claim──▶ running ──▶ completed
///   ▲  ▲               │ ├──▶ queued     (interrupted: shutdown, time slice, throttle)
///   │  │               │ ├──▶ retrying ──(run_at)──▶ claimable again
///   │  └──resume── paused ◀─┤ (pause)
///   │                  │ ├──▶ failed    (fatal error, attempts exhausted, crashed too often)
///   └──────retry───────┘ └──▶ cancelled
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed; `run_at` may lie in the future (scheduled).
    #[default]
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Paused by an operator; `resume` queues it again.
    Paused,
    /// Walked its whole collection.
    Completed,
    /// Failed and waiting for its next attempt at `run_at`.
    Retrying,
    /// Failed for good: fatal error, attempts exhausted, or it crashed its worker too often.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Completed,
        JobState::Retrying,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Retrying => "retrying",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for states a job never leaves on its own (completed, failed, cancelled).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown job state `{s}`; expected one of: queued, running, paused, completed, retrying, failed, cancelled"
                ))
            })
    }
}

/// Why a run ended early on purpose. An interruption is not a failure and does not
/// use up an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptReason {
    /// The worker is shutting down (SIGTERM, SIGINT, deploy).
    Shutdown,
    /// The job used up its time slice and went to the back of its queue.
    TimeSlice,
    /// The kind's throttle condition held; the job backs off and frees its worker.
    Throttled,
    /// An operator asked to pause it.
    Pause,
    /// An operator asked to cancel it.
    Cancel,
    /// Something outside the job was unavailable (its database full, locked or
    /// restarting; no free connection): [`JobError::Unavailable`](crate::JobError::Unavailable).
    Unavailable,
    /// An operator paused the job's queue ([`QueuePauseMode::Interrupt`]); it waits
    /// in the queue until the queue is resumed.
    QueuePaused,
}

impl InterruptReason {
    /// The reason's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            InterruptReason::Shutdown => "shutdown",
            InterruptReason::TimeSlice => "time_slice",
            InterruptReason::Throttled => "throttled",
            InterruptReason::Pause => "pause",
            InterruptReason::Cancel => "cancel",
            InterruptReason::Unavailable => "unavailable",
            InterruptReason::QueuePaused => "queue_paused",
        }
    }
}

impl fmt::Display for InterruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// The registered kind's name.
    pub kind: String,
    /// Parameters, already validated against the kind (see `Registry::new_job`).
    pub params: Value,
    /// The queue it waits in.
    pub queue: String,
    /// Higher runs first within a queue.
    pub priority: i32,
    /// Not before this time; `None` means now.
    pub run_at: Option<Millis>,
    /// Attempts (errors and crashes) allowed before it fails for good.
    pub max_attempts: u32,
    /// At most one unfinished job per unique key: enqueueing a second returns the first.
    pub unique_key: Option<String>,
    /// Start from this cursor instead of the beginning.
    pub cursor: Option<Value>,
    /// Split the collection into this many partitions, each walked as a job of its
    /// own by whichever workers are free (see [`Job::partition`](crate::Job::partition)).
    /// `None`: one job walks the whole collection.
    pub partitions: Option<u32>,
    /// The enqueuer's trace context, a W3C `traceparent` (`00-<trace id>-<span
    /// id>-<flags>`): the job's runs join that trace. [`NewJob::new`] fills it from
    /// the current `tracing` span when the `opentelemetry` feature is on and that
    /// span belongs to a trace; [`NewJob::trace_context`] sets it by hand.
    pub trace_context: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `params`, on the `default` queue, priority 0, 10 attempts.
    pub fn new(kind: impl Into<String>, params: Value) -> Self {
        NewJob {
            kind: kind.into(),
            params,
            queue: DEFAULT_QUEUE.to_string(),
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            unique_key: None,
            cursor: None,
            partitions: None,
            trace_context: crate::otel::current_traceparent(),
        }
    }

    /// Sets the enqueuer's trace context (a W3C `traceparent` header value, e.g. from
    /// an incoming request), or clears it with `None`.
    pub fn trace_context(mut self, traceparent: Option<String>) -> Self {
        self.trace_context = traceparent;
        self
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority (higher runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Schedules the job for later.
    pub fn run_at(mut self, at: Millis) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the attempt budget.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets a unique key (one unfinished job per key).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Walks the collection as `n` partitions in parallel: the job becomes a parent
    /// whose first run splits the collection ([`Job::partition`](crate::Job::partition))
    /// into child jobs, one per partition.
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }
}

/// Most partitions one job may be split into.
pub const MAX_PARTITIONS: u32 = 1024;

/// The queue jobs go to unless told otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// Attempts allowed unless the job or its kind says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The longest queue name, in characters: enforced wherever a job is enqueued (the
/// CLI, the dashboard, [`check_queue_name`]) so every listing can show it.
pub const MAX_QUEUE_NAME_LEN: usize = 200;

/// Checks a queue name before a job is enqueued in it: not empty, at most
/// [`MAX_QUEUE_NAME_LEN`] characters, no control characters (they would reach
/// operators' terminals raw).
///
/// # Errors
/// [`Error::Config`] naming what is wrong.
pub fn check_queue_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Config("the queue name must not be empty".into()));
    }
    let len = name.chars().count();
    if len > MAX_QUEUE_NAME_LEN {
        return Err(Error::Config(format!(
            "the queue name is {len} characters long; at most {MAX_QUEUE_NAME_LEN} are allowed"
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Error::Config(format!(
            "the queue name contains the control character {}; use printable characters",
            c.escape_default()
        )));
    }
    Ok(())
}

/// A job as stored: parameters, state, cursor, progress and bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Its kind's name.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its priority (higher first).
    pub priority: i32,
    /// Its state.
    pub state: JobState,
    /// Its parameters as JSON.
    pub params: Value,
    /// The last checkpointed cursor: everything before it is done. `None` before the first checkpoint.
    pub cursor: Option<Value>,
    /// Items processed, as of the last checkpoint.
    pub items_done: u64,
    /// Items in the collection, when known (exact or estimated).
    pub items_total: Option<u64>,
    /// Attempts used: runs that ended in an error, plus crashes (lease expired).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Runs that ended in an interruption (shutdown, time slice, throttle, pause).
    pub interruptions: u32,
    /// Times its worker lost the lease since the job last made progress.
    pub crashes: u32,
    /// Times it was claimed.
    pub runs: u32,
    /// The last error, with its cause chain.
    pub last_error: Option<String>,
    /// Unique key, if any.
    pub unique_key: Option<String>,
    /// When it was enqueued.
    pub created_at: Millis,
    /// When it may run (next).
    pub run_at: Millis,
    /// When it was first claimed.
    pub started_at: Option<Millis>,
    /// When it finished (completed, failed or cancelled).
    pub finished_at: Option<Millis>,
    /// When its cursor was last written.
    pub checkpointed_at: Option<Millis>,
    /// Total time spent running, over all runs, as of the last checkpoint.
    pub running_ms: u64,
    /// The worker holding the lease, while running.
    pub worker_id: Option<String>,
    /// When the current lease expires, while running.
    pub lease_expires_at: Option<Millis>,
    /// An operator asked to pause it while it was running.
    pub pause_requested: bool,
    /// An operator asked to cancel it while it was running.
    pub cancel_requested: bool,
    /// The partitioned job this job is a partition of.
    pub parent_id: Option<JobId>,
    /// For a partitioned (parent) job: the number of partitions asked for. Once split,
    /// a parent's `items_done` and `items_total` are its partitions' sums.
    pub partitions: Option<u32>,
    /// An idle worker asked this running partition to give away half of what is left.
    pub split_requested: bool,
    /// The enqueuer's trace context (a W3C `traceparent`), if it had one; a
    /// partition has its parent's. See [`NewJob::trace_context`].
    pub trace_context: Option<String>,
    /// Where and how the last run that ended in an error failed: the item, the
    /// attempt, the worker and, for a panic, its backtrace. Kept (like `last_error`)
    /// until the next error.
    pub last_failure: Option<Failure>,
}

/// Where and how a run failed, written with the error ([`Store::job_note_failure`])
/// so that an operator sees which item broke the job, not only why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The cursor the item the work failed on came with (as JSON): the position
    /// just past that item, which for a keyset walk is the row's key. The job
    /// resumes before the item. `None` when the run failed outside the work on an
    /// item (the enumerator, a hook, the total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// The attempt that failed (1 for the first run).
    pub attempt: u32,
    /// The worker that ran it (`host:pid:random`).
    pub worker: String,
    /// When it failed.
    pub at: Millis,
    /// For a panic, its backtrace, captured at the panic (at most
    /// [`MAX_BACKTRACE_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
}

/// The longest backtrace a [`Failure`] keeps; a longer one is cut at a line end
/// and says how much was left out.
pub const MAX_BACKTRACE_BYTES: usize = 16 * 1024;

impl Failure {
    /// `backtrace` cut to [`MAX_BACKTRACE_BYTES`] at a line end, saying how many
    /// lines were left out.
    pub fn bounded_backtrace(backtrace: &str) -> String {
        if backtrace.len() <= MAX_BACKTRACE_BYTES {
            return backtrace.to_string();
        }
        let mut end = MAX_BACKTRACE_BYTES;
        while !backtrace.is_char_boundary(end) {
            end -= 1;
        }
        let cut = backtrace[..end].rfind('\n').unwrap_or(end);
        let left = backtrace[cut..].lines().filter(|l| !l.is_empty()).count();
        format!("{}\n… {left} more lines", &backtrace[..cut])
    }
}

impl JobRecord {
    /// True for a partitioned job (a parent), split or not yet.
    pub fn is_parent(&self) -> bool {
        self.partitions.is_some()
    }
}

/// Fencing token of one run; every write for that run must present it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunToken(pub i64);

impl RunToken {
    /// A fresh random token.
    pub fn random() -> Self {
        RunToken(rand::random::<i64>())
    }
}

/// What a worker asks for when it claims jobs.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Identifies the worker in job records (`host:pid:random`).
    pub worker_id: String,
    /// Queues to take from.
    pub queues: Vec<String>,
    /// Kinds the worker can run; jobs of other kinds are left for other workers.
    pub kinds: Vec<String>,
    /// At most this many jobs.
    pub limit: usize,
    /// Lease length.
    pub lease: Duration,
}

/// A job claimed by a worker, with the run's fencing token.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The job as it was when claimed (state `running`, `runs` already counted).
    pub job: JobRecord,
    /// The run's token.
    pub token: RunToken,
}

/// A job's position and progress, as written at a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Everything before this cursor is done.
    pub cursor: Option<Value>,
    /// Items processed in total.
    pub items_done: u64,
    /// Items in the collection, when known.
    pub items_total: Option<u64>,
    /// Total running time over all runs.
    pub running_ms: u64,
}

/// Requests an operator made while the job was running, seen by the worker at its
/// next checkpoint or heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Pause at the next item boundary.
    pub pause_requested: bool,
    /// Cancel at the next item boundary.
    pub cancel_requested: bool,
    /// Give away half of what is left of this partition at the next item boundary.
    pub split_requested: bool,
}

/// How a run ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The collection is exhausted.
    Completed,
    /// Interrupted on purpose; back to `queued`, claimable from `run_at`.
    Interrupted {
        /// Why.
        reason: InterruptReason,
        /// When it may run again.
        run_at: Millis,
        /// For an interruption by a fault outside the job (the database full,
        /// locked or away; a pool with no free connection): what happened, stored
        /// as the job's last error so that `show` and the dashboard say why the job
        /// keeps going back to its queue. `None` keeps the last error.
        error: Option<String>,
    },
    /// Paused on request.
    Paused,
    /// Cancelled on request.
    Cancelled,
    /// An error; retried at `run_at` (uses up an attempt).
    Retry {
        /// The error and its cause chain.
        error: String,
        /// When to retry.
        run_at: Millis,
    },
    /// An error that ends the job (uses up an attempt).
    Failed {
        /// The error and its cause chain.
        error: String,
    },
}

/// One run's release, as [`Store::job_release`] takes it, for
/// [`Store::job_release_many`].
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// The job.
    pub id: JobId,
    /// The run's token.
    pub token: RunToken,
    /// Progress to write with the release (`None`: keep the last checkpoint).
    pub progress: Option<Progress>,
    /// How the run ended.
    pub outcome: Outcome,
}

/// Filters for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only jobs in this state. A split parent is matched by the state it shows
    /// ([`parent_shown_state`]): listed as `running` only while one of its
    /// partitions runs, as `queued` when none runs and one waits (after a deploy),
    /// as `paused` when all that is left is paused.
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs in this queue.
    pub queue: Option<String>,
    /// Only jobs with an id below this (keyset pagination, newest first).
    pub before_id: Option<JobId>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
    /// Only jobs that are not a partition of another (`parent_id` unset): a
    /// partitioned job is listed once, with its partitions' progress summed, instead
    /// of once plus once per partition. See [`Store::job_partitions`] for those.
    pub top_level: bool,
}

/// What an idle worker asks for when it looks for a running partition to split.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// Queues the worker takes jobs from.
    pub queues: Vec<String>,
    /// Kinds the worker can run.
    pub kinds: Vec<String>,
    /// Only partitions with at least this many items left (by their known total).
    pub min_remaining: u64,
}

/// A running partition's remaining work, divided in two by [`Job::split`](crate::Job::split).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The partition's parameters from now on: the part it keeps walking.
    pub keep: Value,
    /// The parameters of a new partition for the part given away.
    pub give: Value,
}

/// The error a parent fails with when some of its `total` partitions did not
/// complete: each such partition's id, state and error (the first few of them).
pub fn partitions_failed_message(
    total: usize,
    failed: &[(JobId, JobState, Option<String>)],
) -> String {
    use std::fmt::Write as _;
    let mut message = format!(
        "{} of {total} partitions did not complete (retry this job to run them again from their checkpoints)",
        failed.len()
    );
    for (id, state, error) in failed.iter().take(5) {
        let _ = write!(message, "; partition job {id} {state}");
        if let Some(error) = error {
            let _ = write!(message, ": {error}");
        }
    }
    if failed.len() > 5 {
        let _ = write!(message, "; and {} more", failed.len() - 5);
    }
    message
}

/// A split parent's running time as every surface shows it (`show`, `--json`'s
/// `running_ms`, the dashboard, rates and ETAs): the wall-clock span from its first
/// start to its end, or to `now` while unfinished. Its partitions run side by side,
/// so the sum of their running times overstates it by about their number, and a rate
/// over that sum understates the job's speed as much.
pub fn parent_running_ms(record: &JobRecord, now: Millis) -> u64 {
    let Some(start) = record.started_at else {
        return 0;
    };
    let end = record.finished_at.unwrap_or(now);
    u64::try_from(end.saturating_sub(start)).unwrap_or(0)
}

/// How many of a split parent's partitions are in each unfinished state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionStates {
    /// Partitions a worker runs now.
    pub running: u64,
    /// Partitions waiting in their queue.
    pub queued: u64,
    /// Partitions waiting to be retried after an error.
    pub retrying: u64,
    /// Partitions an operator paused.
    pub paused: u64,
}

impl PartitionStates {
    /// Counts `partitions` by state.
    pub fn of<'a>(partitions: impl IntoIterator<Item = &'a JobRecord>) -> Self {
        let mut states = PartitionStates::default();
        for p in partitions {
            match p.state {
                JobState::Running => states.running += 1,
                JobState::Queued => states.queued += 1,
                JobState::Retrying => states.retrying += 1,
                JobState::Paused => states.paused += 1,
                _ => {}
            }
        }
        states
    }
}

/// The state a split parent shows. Stored, a split parent stays `running` from its
/// split to its end (no worker holds it; its partitions run); shown, it follows its
/// unfinished partitions: `running` while one runs, else `queued` while one waits
/// (interrupted by a deploy, say), else `retrying`, else `paused` when all that is
/// left is paused. A parent in any other stored state (paused or cancelled by an
/// operator, finished) shows that.
pub fn parent_shown_state(stored: JobState, partitions: PartitionStates) -> JobState {
    if stored != JobState::Running {
        return stored;
    }
    if partitions.running > 0 {
        JobState::Running
    } else if partitions.queued > 0 {
        JobState::Queued
    } else if partitions.retrying > 0 {
        JobState::Retrying
    } else if partitions.paused > 0 {
        JobState::Paused
    } else {
        stored
    }
}

/// [`Store::job_count_top_level_by_state`] from two reads: `all`, every job by
/// state ([`Store::job_count_by_state`]); `partitions`, every partition as
/// (parent, the parent's stored state, the partition's state, count). The
/// partitions are taken out, and each parent stored `running` moves to the state
/// it shows ([`parent_shown_state`]). Every state is in the result, zero when none.
pub fn top_level_counts(
    all: impl IntoIterator<Item = (JobState, u64)>,
    partitions: impl IntoIterator<Item = (JobId, JobState, JobState, u64)>,
) -> Vec<(JobState, u64)> {
    let mut counts: Vec<(JobState, u64)> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
    let slot = |state: JobState| -> usize {
        JobState::ALL
            .iter()
            .position(|s| *s == state)
            .unwrap_or_default()
    };
    for (state, n) in all {
        counts[slot(state)].1 += n;
    }
    let mut running_parents: std::collections::BTreeMap<JobId, PartitionStates> =
        Default::default();
    for (parent, parent_state, state, n) in partitions {
        let i = slot(state);
        counts[i].1 = counts[i].1.saturating_sub(n);
        if parent_state != JobState::Running {
            continue;
        }
        let states = running_parents.entry(parent).or_default();
        match state {
            JobState::Running => states.running += n,
            JobState::Queued => states.queued += n,
            JobState::Retrying => states.retrying += n,
            JobState::Paused => states.paused += n,
            _ => {}
        }
    }
    for states in running_parents.into_values() {
        let shown = parent_shown_state(JobState::Running, states);
        let (from, to) = (slot(JobState::Running), slot(shown));
        if from != to && counts[from].1 > 0 {
            counts[from].1 -= 1;
            counts[to].1 += 1;
        }
    }
    counts
}

/// [`Store::queue_depths`] from two reads: `all`, every job by queue and state;
/// `split_parents`, the split parents by queue and state, taken out. Sorted by
/// queue then state; pairs left at zero are dropped.
pub fn subtract_depths(
    all: Vec<(String, JobState, u64)>,
    split_parents: Vec<(String, JobState, u64)>,
) -> Vec<(String, JobState, u64)> {
    let mut depths: std::collections::BTreeMap<(String, JobState), u64> = Default::default();
    for (queue, state, n) in all {
        *depths.entry((queue, state)).or_default() += n;
    }
    for (queue, state, n) in split_parents {
        if let Some(d) = depths.get_mut(&(queue, state)) {
            *d = d.saturating_sub(n);
        }
    }
    depths
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((q, s), n)| (q, s, n))
        .collect()
}

/// True for a state a split parent can show without storing it (`queued`,
/// `retrying`, `paused`: stored, it stays `running`). A listing by such a state
/// also looks among the split parents ([`merge_listing`]).
pub fn shown_by_split_parents(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Retrying | JobState::Paused
    )
}

/// A listing page (newest first, at most `limit`) merged with the split parents
/// found to show the state listed: each job once, newest first, at most `limit`.
/// Both inputs are pages below the same `before_id`, so their union's first
/// `limit` is the page.
pub fn merge_listing(
    mut listed: Vec<JobRecord>,
    parents: Vec<JobRecord>,
    limit: usize,
) -> Vec<JobRecord> {
    for parent in parents {
        if !listed.iter().any(|r| r.id == parent.id) {
            listed.push(parent);
        }
    }
    listed.sort_by_key(|r| std::cmp::Reverse(r.id));
    listed.truncate(limit);
    listed
}

/// The split parents that show `state` ([`shown_by_split_parents`]), newest first,
/// below `before`: asks `page(before)` for the next page of split parents (stored
/// `running`, newest first, below `before`, at most `limit`, their progress and
/// shown state applied) until a page comes back short or `limit` of them show
/// `state`. Every SQL store lists with it, then [`merge_listing`]s.
///
/// # Errors
/// The first error `page` returns.
pub async fn split_parents_showing<F, Fut>(
    state: JobState,
    mut before: Option<JobId>,
    limit: usize,
    mut page: F,
) -> Result<Vec<JobRecord>>
where
    F: FnMut(Option<JobId>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<JobRecord>>>,
{
    let mut found = Vec::new();
    loop {
        let records = page(before).await?;
        let full = records.len() >= limit;
        for record in records {
            before = Some(record.id);
            if record.state == state {
                found.push(record);
            }
        }
        if !full || found.len() >= limit {
            return Ok(found);
        }
    }
}

/// How a split parent ends, given all its partitions: `None` while one is
/// unfinished (or there are none); `Completed` when every one completed; `Failed`,
/// with an error naming those that did not, otherwise. Every store finishes parents
/// by this rule.
pub fn parent_outcome(partitions: &[JobRecord]) -> Option<(JobState, Option<String>)> {
    if partitions.is_empty() || partitions.iter().any(|c| !c.state.is_finished()) {
        return None;
    }
    let failed: Vec<_> = partitions
        .iter()
        .filter(|c| c.state != JobState::Completed)
        .map(|c| (c.id, c.state, c.last_error.clone()))
        .collect();
    Some(if failed.is_empty() {
        (JobState::Completed, None)
    } else {
        (
            JobState::Failed,
            Some(partitions_failed_message(partitions.len(), &failed)),
        )
    })
}

/// What one [`Store::job_prune`] batch deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneBatch {
    /// Top-level jobs deleted (each with its partitions and history).
    pub deleted: u64,
    /// The highest id deleted: the next batch's `after` (`None` when none was).
    pub last_id: Option<JobId>,
}

/// What the rescuer did to a job whose lease expired.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescued {
    /// The job.
    pub id: JobId,
    /// Its new state: `queued` again, or `failed` when it crashed too often.
    pub state: JobState,
}

/// The storage interface. See the module docs for the rules every store follows.
///
/// Timestamps are taken from the store's own clock (for a shared database, the
/// database's), so workers on different machines agree on lease expiry.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema. Idempotent.
    async fn migrate(&self) -> Result<()>;

    /// Enqueues jobs in one transaction and returns their ids, in order. A job whose
    /// `unique_key` matches an unfinished job returns that job's id instead.
    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>>;

    /// Enqueues one job; see [`Store::job_insert_many`].
    async fn job_insert(&self, job: &NewJob) -> Result<JobId> {
        let ids = self.job_insert_many(std::slice::from_ref(job)).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("insert returned no id".into()))
    }

    /// Claims up to `limit` claimable jobs: state `queued` or `retrying` with
    /// `run_at <= now`, of one of the kinds and queues asked for, highest priority
    /// first, then oldest `run_at`, then lowest id. Each claimed job becomes
    /// `running` with a fresh token, `runs + 1`, `started_at` set if unset, and a
    /// lease until now + `lease`. Two concurrent claims never return the same job.
    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>>;

    /// Extends the lease of a running job and returns the operator's pending requests.
    /// Fails with `LeaseLost` if the token does not match.
    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control>;

    /// Writes cursor and progress, extends the lease, and returns pending requests.
    /// Resets `crashes` to 0 when `items_done` grew. Fails with `LeaseLost` if the
    /// token does not match.
    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control>;

    /// Records where and how the running job's current run failed, just before the
    /// run is released with the error. Fenced like a checkpoint: `LeaseLost` if the
    /// token does not match. The default keeps nothing, for a store without the
    /// column; the memory, SQLite, PostgreSQL and MySQL stores keep it as
    /// [`JobRecord::last_failure`].
    async fn job_note_failure(&self, id: JobId, token: RunToken, failure: &Failure) -> Result<()> {
        let _ = (id, token, failure);
        Ok(())
    }

    /// Ends the run: writes progress (if given) and moves the job to the outcome's
    /// state, clearing token, worker and lease. `Retry` and `Failed` add an attempt
    /// and set `last_error`; `Interrupted` adds an interruption; `Completed`,
    /// `Failed` and `Cancelled` set `finished_at`. Fails with `LeaseLost` if the
    /// token does not match.
    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()>;

    /// Releases several runs at once, each exactly as [`Store::job_release`] would and
    /// each fenced by its own token: one release rejected with `LeaseLost` (or
    /// `JobNotFound`) leaves the others unaffected. Returns one result per release, in
    /// order. An `Err` of the whole call means the batch could not be written (none
    /// of it, for a store that writes it in one transaction, as the SQL stores do).
    /// The default releases one by one.
    async fn job_release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(releases.len());
        for r in releases {
            results.push(
                self.job_release(r.id, r.token, r.progress.as_ref(), &r.outcome)
                    .await,
            );
        }
        Ok(results)
    }

    /// Requeues running jobs whose lease expired before now: each gets `crashes + 1`
    /// and `attempts + 1`; a job whose crashes reach `max_crashes`, or whose attempts
    /// reach `max_attempts`, fails instead, with an error saying so. Its token is
    /// cleared, so the lost worker's writes are rejected from then on.
    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>>;

    /// One job.
    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>>;

    /// Jobs matching the filter, newest (highest id) first.
    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>>;

    /// Counts of jobs by state (every state present, zero when none). Every row
    /// counts: a partitioned job once for itself and once per partition.
    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>>;

    /// Counts of top-level jobs by the state they show (every state present, zero
    /// when none): a partitioned job counts once, by [`parent_shown_state`], and
    /// its partitions not at all — what an operator counts as jobs. See
    /// [`top_level_counts`] for the rule, given the two reads it takes.
    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>>;

    /// Jobs per queue and state (only the pairs that have jobs), counted as
    /// [`Store::queue_rows`] counts them: a split parent left out, its partitions
    /// counted. The default sums `queue_rows`, a full aggregate; the SQL stores
    /// answer from the state-and-queue index instead, so that the overview stays
    /// cheap on a big store.
    async fn queue_depths(&self) -> Result<Vec<(String, JobState, u64)>> {
        let mut depths: std::collections::BTreeMap<(String, JobState), u64> = Default::default();
        for row in self.queue_rows(now_millis()).await? {
            *depths.entry((row.queue, row.state)).or_default() += row.jobs;
        }
        Ok(depths.into_iter().map(|((q, s), n)| (q, s, n)).collect())
    }

    /// Pauses a job: queued or retrying → paused at once; running → `pause_requested`
    /// (the worker pauses it at the next item boundary). Returns the job after the
    /// change. Errors with `InvalidTransition` for finished jobs.
    async fn job_pause(&self, id: JobId) -> Result<JobRecord>;

    /// Resumes a paused job (→ queued, run now); clears a pending pause request on a
    /// running job. Errors with `InvalidTransition` otherwise.
    async fn job_resume(&self, id: JobId) -> Result<JobRecord>;

    /// Cancels a job: queued, retrying or paused → cancelled at once; running →
    /// `cancel_requested`. Errors with `InvalidTransition` for finished jobs.
    async fn job_cancel(&self, id: JobId) -> Result<JobRecord>;

    /// Deletes a job that is finished (completed, failed, cancelled) or paused, with
    /// its history; a partitioned job with all its partitions, in one transaction
    /// (never some of them). Returns how many jobs were deleted (1 + partitions).
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::InvalidTransition`] for a job that is
    /// running, queued or retrying (cancel or pause it first), for a partitioned job
    /// with a partition in one of those states, and for a partition alone (delete
    /// its parent): see [`delete_check`](crate::store::rules::delete_check).
    async fn job_delete(&self, id: JobId) -> Result<u64>;

    /// Retention: deletes up to `limit` top-level jobs with ids above `after` in the
    /// finished `state` that finished before `finished_before`, each with its
    /// partitions and history, in one short transaction, lowest ids first. Call it
    /// in a loop, passing the batch's [`PruneBatch::last_id`] as the next `after`
    /// (start from 0), until a batch deletes fewer than `limit`: small batches keep
    /// each transaction and its locks short, and the id walk never re-reads the rows
    /// deleted before (which, until vacuumed, every batch from the start would).
    ///
    /// # Errors
    /// [`Error::Config`] when `state` is not a finished state.
    async fn job_prune(
        &self,
        state: JobState,
        finished_before: Millis,
        after: JobId,
        limit: usize,
    ) -> Result<PruneBatch>;

    /// How many top-level jobs [`Store::job_prune`] would delete for `state` and
    /// `finished_before` (for a dry run).
    ///
    /// # Errors
    /// [`Error::Config`] when `state` is not a finished state.
    async fn job_prunable(&self, state: JobState, finished_before: Millis) -> Result<u64>;

    /// Takes one tick of a recurring schedule, exactly once across every process:
    /// in one transaction, moves the schedule's last tick from `tick.previous`
    /// (`None`: the schedule has no row yet) to `tick.tick` — or does nothing and
    /// returns [`TickOutcome::Stale`] when the store holds another value (another
    /// process took it) — and enqueues `tick.job` unless `skip_if_running` and the
    /// schedule's previous job has not finished. See [`crate::schedule`].
    async fn schedule_tick(&self, tick: &ScheduleTick) -> Result<TickOutcome>;

    /// Every schedule's state (last tick, last job), by name.
    async fn schedule_states(&self) -> Result<Vec<ScheduleState>>;

    /// Takes or renews the named lease for `holder` until `ttl` from now (the store's
    /// clock), if it is free, expired, or already `holder`'s; returns whether
    /// `holder` holds it now. One atomic step: of many processes asking at once, one
    /// gets it. For work one process at a time should do across every worker of a
    /// store (retention, schedules); the holder renews it while working and a
    /// holder that dies loses it when it expires.
    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Gives the named lease up if `holder` holds it (another may take it at once).
    async fn lease_release(&self, name: &str, holder: &str) -> Result<()>;

    /// Pauses a queue: from the moment this returns no job of the queue is claimed
    /// (by any worker of any process) until [`Store::queue_resume`]; what happens
    /// to its running jobs is `mode`'s, carried out by the workers, which read the
    /// pauses every [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval).
    /// A queue may be paused before any job is in it. Pausing a paused queue keeps
    /// its `since` and sets the new mode. Returns the pause.
    ///
    /// # Errors
    /// [`Error::Config`] for a name [`check_queue_name`] refuses.
    async fn queue_pause(&self, queue: &str, mode: QueuePauseMode) -> Result<QueuePause>;

    /// Resumes a paused queue: its waiting jobs are claimable again at once (and
    /// waiting workers are woken). Returns whether it was paused.
    async fn queue_resume(&self, queue: &str) -> Result<bool>;

    /// The paused queues, by name.
    async fn queue_pauses(&self) -> Result<Vec<QueuePause>>;

    /// Switches a throttle on (see [`ThrottleSwitch`]) for its queue and kind, or
    /// updates the one already on for exactly that scope (keeping its `since`, taking
    /// the new `until` and `reason`). Switches whose time is up are deleted on the
    /// way. Workers see it within a [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval).
    /// Returns the switch as stored.
    ///
    /// # Errors
    /// [`Error::Config`] for what [`ThrottleSwitch::validate`] refuses.
    async fn throttle_on(&self, switch: &ThrottleSwitch) -> Result<ThrottleSwitch>;

    /// Switches off the throttle on exactly this scope (`None`: the switch that
    /// covers every queue, or every kind). Returns whether one was on.
    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool>;

    /// The throttle switches on at `now` (those whose `until` has passed left out),
    /// ordered by queue, then kind, the switch for every queue (or kind) first.
    async fn throttle_switches(&self, now: Millis) -> Result<Vec<ThrottleSwitch>>;

    /// The jobs of every queue, aggregated per queue, kind and state, split
    /// parents left out (a partitioned job counts as its partitions): one
    /// [`QueueRow`] per group that has jobs, with `now` deciding which are
    /// claimable. See [`Store::queue_stats`] for the summary.
    async fn queue_rows(&self, now: Millis) -> Result<Vec<QueueRow>>;

    /// Every queue that has jobs or is paused, summarized ([`summarize`]): counts
    /// per state, the backlog and the estimated work left.
    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let now = now_millis();
        let rows = self.queue_rows(now).await?;
        let pauses = self.queue_pauses().await?;
        Ok(summarize(&rows, &pauses, now))
    }

    /// Records that a worker is alive: `presence` replaces what the store held for
    /// its id, and rows silent for longer than [`WORKER_FORGET_MS`] are forgotten.
    /// Every worker calls it each presence interval
    /// ([`WorkerConfig::presence_interval`](crate::WorkerConfig::presence_interval),
    /// 5 s by default); [`Store::workers`] lists
    /// them. The default records nothing (and `workers` says so).
    async fn worker_beat(&self, presence: &WorkerPresence) -> Result<()> {
        let _ = presence;
        Ok(())
    }

    /// Forgets a worker that stopped cleanly. The default does nothing.
    async fn worker_gone(&self, id: &str) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// The workers that beat within [`WORKER_FORGET_MS`], by id, silent ones
    /// included ([`WorkerPresence::is_silent`]). The default refuses: the store
    /// does not record workers.
    async fn workers(&self) -> Result<Vec<WorkerPresence>> {
        Err(Error::Config(
            "this store does not record workers (it does not implement \
             Store::worker_beat and Store::workers)"
                .to_string(),
        ))
    }

    /// Resolves when jobs may have become claimable (inserted, resumed, retried, or
    /// announced by another process, e.g. through PostgreSQL `NOTIFY`). A hint only:
    /// it may wake spuriously or miss a wake-up, so workers poll as well. The
    /// default never resolves (polling alone).
    async fn job_wait_available(&self) {
        std::future::pending::<()>().await
    }

    /// Retries a failed or cancelled job from its last checkpoint: → queued, run now,
    /// attempts and crashes reset to 0, `finished_at` cleared, `last_error` kept.
    /// Errors with `InvalidTransition` otherwise.
    async fn job_retry(&self, id: JobId) -> Result<JobRecord>;

    /// Splits a claimed parent (a job enqueued with `partitions`) into child jobs, one
    /// per element of `children` (their parameters), fenced by the planning run's
    /// token. The children copy the parent's kind, queue, priority and attempt budget
    /// and are claimable at once; the parent stays `running` without a lease (no
    /// worker holds it) until its last child finishes, or completes at once when
    /// `children` is empty. Returns the children's ids.
    ///
    /// ## Parents
    /// * Reads of a split parent report its children's summed `items_done` and
    ///   `items_total` (the latter only once every child's total is known).
    /// * Pause, resume, cancel and retry of a split parent reach every child: pause
    ///   pauses waiting children and asks running ones to pause; resume resumes them;
    ///   cancel cancels them (running ones at their next item boundary) and the parent
    ///   at once; retry retries the failed and cancelled children.
    /// * When its last unfinished child finishes, the parent completes if every child
    ///   completed, and fails otherwise with an error naming the children that did not.
    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>>;

    /// A checkpoint that also clears `split_requested` and, given a [`Split`], divides
    /// the running partition: its parameters become `split.keep` (its `items_total`
    /// is cleared, to be counted again) and a new partition with `split.give` joins
    /// the same parent, claimable at once — paused or cancelled instead if the parent
    /// is. Fenced like [`Store::job_checkpoint`]; returns the new partition's id.
    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>>;

    /// For an idle worker: marks the running partition (a job with a parent) of one of
    /// the request's kinds and queues with the most items left, at least
    /// `min_remaining` by its known total, `split_requested` (skipping those already
    /// asked and those with a pending pause or cancel). Returns its id, or `None` when
    /// no partition qualifies.
    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>>;

    /// The partitions of a parent, by id (empty for a job that has none).
    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>>;

    /// Reserves `n` units of the rate-limit bucket `key`, each worth `interval` (one
    /// item of a kind limited to 100 per second is worth 10 ms), and returns how long
    /// from now the reservation starts: the caller may use its units from then on,
    /// one `interval` apart. Reservations never overlap, so every caller of every
    /// process sharing the store together stays within the rate (GCRA; see
    /// [`rate_cost_micros`] and the `rate` module docs). An unknown key is a fresh,
    /// idle bucket; an idle bucket banks no credit.
    ///
    /// One atomic step on the store's clock. The default implementation keeps the
    /// buckets in this process's memory, so it limits **each process** on its own
    /// (not all workers together): a store shared between processes should
    /// implement it (the SQLite and PostgreSQL stores do, with a `rate_limits`
    /// table).
    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        Ok(rate::RateBuckets::process().acquire(key, n, interval))
    }

    /// The job's history, newest first, at most `limit` events (capped at
    /// [`MAX_EVENTS`]): interruptions, errors, rescues and operator actions, each
    /// written with the state change it records. An unknown job has none. The
    /// default returns none, for a store that keeps no history.
    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        let _ = (id, limit);
        Ok(Vec::new())
    }
}
