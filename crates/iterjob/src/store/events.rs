//! A job's history: the events a store records beside a state change (interruptions,
//! errors, rescues, operator actions), for the dashboard's job page.
//!
//! An event is written in the same statement or transaction as the state change it
//! describes, so the history never disagrees with the job row. Checkpoints and plain
//! completion are not events: they live on the job row (`cursor`, `checkpointed_at`,
//! `finished_at`), and a completing run writes nothing more than it did before.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::{InterruptReason, JobId, JobState, Millis, Outcome};

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// A run ended early on purpose (see [`JobEvent::reason`]): shutdown, time slice,
    /// throttle, or a pause or cancel request reached the job between two items.
    Interrupted,
    /// A run ended in an error that will be retried ([`JobEvent::error`]).
    Retrying,
    /// A run ended in an error that failed the job ([`JobEvent::error`]).
    Failed,
    /// The job's worker lost its lease; the job was queued again or failed.
    Rescued,
    /// An operator paused the job (or asked its running worker to).
    OperatorPause,
    /// An operator resumed the job (or withdrew a pending pause request).
    OperatorResume,
    /// An operator cancelled the job (or asked its running worker to).
    OperatorCancel,
    /// An operator retried a failed or cancelled job.
    OperatorRetry,
}

impl JobEventKind {
    /// Every kind.
    pub const ALL: [JobEventKind; 8] = [
        JobEventKind::Interrupted,
        JobEventKind::Retrying,
        JobEventKind::Failed,
        JobEventKind::Rescued,
        JobEventKind::OperatorPause,
        JobEventKind::OperatorResume,
        JobEventKind::OperatorCancel,
        JobEventKind::OperatorRetry,
    ];

    /// The kind's name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            JobEventKind::Interrupted => "interrupted",
            JobEventKind::Retrying => "retrying",
            JobEventKind::Failed => "failed",
            JobEventKind::Rescued => "rescued",
            JobEventKind::OperatorPause => "operator_pause",
            JobEventKind::OperatorResume => "operator_resume",
            JobEventKind::OperatorCancel => "operator_cancel",
            JobEventKind::OperatorRetry => "operator_retry",
        }
    }

    /// True for the actions of an operator (pause, resume, cancel, retry).
    pub fn is_operator(self) -> bool {
        matches!(
            self,
            JobEventKind::OperatorPause
                | JobEventKind::OperatorResume
                | JobEventKind::OperatorCancel
                | JobEventKind::OperatorRetry
        )
    }
}

impl fmt::Display for JobEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobEventKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        JobEventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown job event kind `{s}`")))
    }
}

impl FromStr for InterruptReason {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            InterruptReason::Shutdown,
            InterruptReason::TimeSlice,
            InterruptReason::Throttled,
            InterruptReason::Pause,
            InterruptReason::Cancel,
            InterruptReason::Unavailable,
            InterruptReason::QueuePaused,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Error::Corrupt(format!("unknown interruption reason `{s}`")))
    }
}

/// One entry of a job's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The event's id: increases with time within a store.
    pub id: i64,
    /// The job.
    pub job_id: JobId,
    /// When it happened (the store's clock).
    pub at: Millis,
    /// What happened.
    pub kind: JobEventKind,
    /// The job's state right after it.
    pub state: JobState,
    /// Why a run was interrupted ([`JobEventKind::Interrupted`] only).
    pub reason: Option<InterruptReason>,
    /// The job's cursor right after it.
    pub cursor: Option<Value>,
    /// Items done right after it.
    pub items_done: u64,
    /// The error, with its cause chain (retrying, failed, and rescues that failed the job).
    pub error: Option<String>,
}

/// The history entry a release with this outcome writes, if any: its kind, the
/// interruption reason and the error. `None` for [`Outcome::Completed`], which
/// writes no event (completion is on the job row).
pub fn release_event(
    outcome: &Outcome,
) -> Option<(JobEventKind, Option<InterruptReason>, Option<&str>)> {
    match outcome {
        Outcome::Completed => None,
        Outcome::Interrupted { reason, .. } => {
            Some((JobEventKind::Interrupted, Some(*reason), None))
        }
        Outcome::Paused => Some((
            JobEventKind::Interrupted,
            Some(InterruptReason::Pause),
            None,
        )),
        Outcome::Cancelled => Some((
            JobEventKind::Interrupted,
            Some(InterruptReason::Cancel),
            None,
        )),
        Outcome::Retry { error, .. } => Some((JobEventKind::Retrying, None, Some(error))),
        Outcome::Failed { error } => Some((JobEventKind::Failed, None, Some(error))),
    }
}

/// The largest `limit` a store honours in [`Store::job_events`](crate::Store::job_events).
pub const MAX_EVENTS: usize = 10_000;
