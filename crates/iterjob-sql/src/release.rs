//! What a run's release writes, per outcome, and small conversions every SQL store
//! binds with.

use std::time::Duration;

use iterjob::store::{Failure, JobState, Millis, Outcome, duration_millis};
use iterjob::{Error, Result};
use serde_json::Value;

/// How a release changes the job's row (the parameters of each store's
/// `job_release` after the progress).
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseChange<'a> {
    /// The state the job goes to.
    pub state: JobState,
    /// When it may run again (`None`: keep `run_at`).
    pub run_at: Option<Millis>,
    /// Attempts to add (1 for an error).
    pub attempts: i64,
    /// Interruptions to add (1 for an interruption).
    pub interruptions: i64,
    /// The error to store as `last_error` (`None`: keep it).
    pub error: Option<&'a str>,
    /// Set `finished_at`.
    pub finished: bool,
    /// Clear pending pause and cancel requests (the job ends paused or finished);
    /// kept on an interruption or a retry.
    pub clear_requests: bool,
}

impl<'a> ReleaseChange<'a> {
    /// The change `outcome` makes.
    pub fn of(outcome: &'a Outcome) -> Self {
        let base = |state: JobState| ReleaseChange {
            state,
            run_at: None,
            attempts: 0,
            interruptions: 0,
            error: None,
            finished: state.is_finished(),
            clear_requests: true,
        };
        match outcome {
            Outcome::Completed => base(JobState::Completed),
            Outcome::Interrupted { run_at, error, .. } => ReleaseChange {
                run_at: Some(*run_at),
                interruptions: 1,
                error: error.as_deref(),
                clear_requests: false,
                ..base(JobState::Queued)
            },
            Outcome::Paused => base(JobState::Paused),
            Outcome::Cancelled => base(JobState::Cancelled),
            Outcome::Retry { error, run_at } => ReleaseChange {
                run_at: Some(*run_at),
                attempts: 1,
                error: Some(error),
                clear_requests: false,
                ..base(JobState::Retrying)
            },
            Outcome::Failed { error } => ReleaseChange {
                attempts: 1,
                error: Some(error),
                ..base(JobState::Failed)
            },
        }
    }
}

/// `now + lease`, in milliseconds, saturating.
pub fn lease_until(now: Millis, lease: Duration) -> Millis {
    now.saturating_add(duration_millis(lease))
}

/// A count as a signed 64-bit column value, saturating.
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A JSON value as text, for a JSON or text column.
///
/// # Errors
/// [`Error::Serialize`] naming `what` (it cannot happen for a `Value`, but the
/// signature keeps callers honest).
pub fn json_text(value: &Value, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialize { what, source })
}

/// A run's [`Failure`] as JSON text, for the `last_failure` column.
pub fn failure_text(failure: &Failure) -> Result<String> {
    serde_json::to_string(failure).map_err(|source| Error::Serialize {
        what: "run failure",
        source,
    })
}
