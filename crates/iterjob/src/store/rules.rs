//! The operator's actions on one job — pause, resume, cancel, retry — decided the
//! same way by every store: which states each acts on, how, and the error (with
//! what to do instead) for the others.
//!
//! A store reads the job, asks [`admin_step`] what to do, and carries it out in its
//! own way (one SQL statement, a cascade over a parent's partitions, a change in
//! memory), so the rules and their messages cannot drift between stores.

use crate::error::{Error, Result};
use crate::store::{JobRecord, JobState};

/// An operator's action on a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    /// Pause it.
    Pause,
    /// Resume a paused job.
    Resume,
    /// Cancel it.
    Cancel,
    /// Run a failed or cancelled job again from its checkpoint.
    Retry,
}

impl AdminAction {
    /// The action's name in messages: `pause`, `resume`, `cancel`, `retry`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Pause => "pause",
            AdminAction::Resume => "resume",
            AdminAction::Cancel => "cancel",
            AdminAction::Retry => "retry",
        }
    }
}

/// What an action does to a job in its current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminStep {
    /// Nothing to change (pausing a paused job): the job as it is is the answer.
    Unchanged,
    /// The job changes at once: paused, queued again, cancelled, retried.
    Now,
    /// The job is running: the request is left for its worker, which acts on it at
    /// the next item boundary (pause or cancel requested; a resume withdraws a
    /// pending pause request).
    Requested,
    /// The job is a parent split into partitions: the action goes to them (and the
    /// parent follows).
    Cascade,
}

/// Asks a job `not finished yet` the hint messages say what to do instead.
const FINISHED: &str = "it already finished";

/// Why a retry was refused when another job holds the unique key.
pub const UNIQUE_KEY_HELD: &str =
    "another unfinished job holds its unique key; cancel that one first";

/// What `action` does to `record`; `split_parent` says whether it is a parent
/// already split into partitions.
///
/// # Errors
/// [`Error::InvalidTransition`] naming the job, its state and what to do instead,
/// when the action does not apply to a job in that state.
pub fn admin_step(
    action: AdminAction,
    record: &JobRecord,
    split_parent: bool,
) -> Result<AdminStep> {
    use JobState::{Cancelled, Completed, Failed, Paused, Queued, Retrying, Running};
    let refuse = |hint: &'static str| Err(invalid(record, action.as_str(), hint));
    match action {
        AdminAction::Pause => match record.state {
            _ if split_parent && !record.state.is_finished() => Ok(AdminStep::Cascade),
            Queued | Retrying => Ok(AdminStep::Now),
            Running => Ok(AdminStep::Requested),
            Paused => Ok(AdminStep::Unchanged),
            Completed | Failed | Cancelled => refuse(FINISHED),
        },
        AdminAction::Resume => match record.state {
            // a split parent stays running while an operator pauses some of its
            // partitions: resuming it resumes those
            Paused | Running if split_parent => Ok(AdminStep::Cascade),
            Paused => Ok(AdminStep::Now),
            Running if record.pause_requested => Ok(AdminStep::Requested),
            Running => {
                refuse("it is running and no pause is pending; only paused jobs can be resumed")
            }
            Failed | Cancelled => refuse(
                "only paused jobs can be resumed; use retry to run a failed or cancelled job again",
            ),
            Queued | Retrying | Completed => refuse("only paused jobs can be resumed"),
        },
        AdminAction::Cancel => match record.state {
            Completed | Failed | Cancelled => refuse(FINISHED),
            _ if split_parent => Ok(AdminStep::Cascade),
            Queued | Retrying | Paused => Ok(AdminStep::Now),
            Running => Ok(AdminStep::Requested),
        },
        AdminAction::Retry => match record.state {
            Failed | Cancelled if split_parent => Ok(AdminStep::Cascade),
            Failed | Cancelled => Ok(AdminStep::Now),
            _ => refuse("only failed or cancelled jobs can be retried"),
        },
    }
}

/// Whether `record` may be deleted ([`Store::job_delete`](crate::Store::job_delete)),
/// given its partitions (`children`, empty for a job that was not split): a job that
/// is finished or paused, never a partition alone (its parent's progress sums it),
/// and a split job only when every partition is finished or paused.
///
/// # Errors
/// [`Error::InvalidTransition`] naming why and what to do.
pub fn delete_check(record: &JobRecord, children: &[JobRecord]) -> Result<()> {
    use JobState::{Queued, Retrying, Running};
    let refuse = |hint: &'static str| Err(invalid(record, "delete", hint));
    if record.parent_id.is_some() {
        return refuse(
            "it is a partition of another job; delete that job, which deletes its partitions \
             with it",
        );
    }
    let waiting = |state: JobState| matches!(state, Queued | Retrying | Running);
    if children.iter().any(|c| waiting(c.state)) {
        return refuse(
            "a partition of it is running or waiting to run; cancel or pause the job first, \
             then delete it",
        );
    }
    match record.state {
        // a split parent is `running` while its partitions are: they decide
        Running if !children.is_empty() => Ok(()),
        Running => refuse("it is running; cancel it first, then delete it once it is cancelled"),
        Queued | Retrying => refuse("it may start at any moment; cancel or pause it first"),
        _ => Ok(()),
    }
}

/// Checks that `state` is one retention may prune (a finished state).
///
/// # Errors
/// [`Error::Config`] naming the finished states.
pub fn prune_check(state: JobState) -> Result<()> {
    if state.is_finished() {
        Ok(())
    } else {
        Err(crate::Error::Config(format!(
            "only finished jobs are pruned (completed, failed or cancelled), not {state} ones"
        )))
    }
}

/// The error for `action` refused on `record`, with `hint` saying why and what to do.
pub fn invalid(record: &JobRecord, action: &'static str, hint: &'static str) -> Error {
    Error::InvalidTransition {
        job: record.id,
        state: record.state,
        action,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobRecord, JobState};

    fn job(state: JobState) -> JobRecord {
        JobRecord {
            id: 7,
            kind: "k".into(),
            queue: "default".into(),
            priority: 0,
            state,
            params: serde_json::Value::Null,
            cursor: None,
            items_done: 0,
            items_total: None,
            attempts: 0,
            max_attempts: 10,
            interruptions: 0,
            crashes: 0,
            runs: 0,
            last_error: None,
            unique_key: None,
            created_at: 0,
            run_at: 0,
            started_at: None,
            finished_at: None,
            checkpointed_at: None,
            running_ms: 0,
            worker_id: None,
            lease_expires_at: None,
            pause_requested: false,
            cancel_requested: false,
            parent_id: None,
            partitions: None,
            split_requested: false,
            trace_context: None,
            last_failure: None,
        }
    }

    #[test]
    fn every_action_in_every_state() {
        use AdminAction::*;
        use AdminStep::*;
        use JobState::*;
        let table: [(AdminAction, [Option<AdminStep>; 7]); 4] = [
            // queued, running, paused, completed, retrying, failed, cancelled
            (
                Pause,
                [
                    Some(Now),
                    Some(Requested),
                    Some(Unchanged),
                    None,
                    Some(Now),
                    None,
                    None,
                ],
            ),
            (Resume, [None, None, Some(Now), None, None, None, None]),
            (
                Cancel,
                [
                    Some(Now),
                    Some(Requested),
                    Some(Now),
                    None,
                    Some(Now),
                    None,
                    None,
                ],
            ),
            (Retry, [None, None, None, None, None, Some(Now), Some(Now)]),
        ];
        for (action, expected) in table {
            for (state, expected) in JobState::ALL.into_iter().zip(expected) {
                let got = admin_step(action, &job(state), false).ok();
                assert_eq!(got, expected, "{action:?} on a {state} job");
            }
        }
        let mut pausing = job(Running);
        pausing.pause_requested = true;
        assert_eq!(admin_step(Resume, &pausing, false).unwrap(), Requested);
        // a split parent passes the action to its partitions
        assert_eq!(admin_step(Pause, &job(Running), true).unwrap(), Cascade);
        assert_eq!(admin_step(Resume, &job(Paused), true).unwrap(), Cascade);
        assert_eq!(
            admin_step(Resume, &job(Running), true).unwrap(),
            Cascade,
            "a running parent with paused partitions"
        );
        assert_eq!(admin_step(Cancel, &job(Paused), true).unwrap(), Cascade);
        assert_eq!(admin_step(Retry, &job(Failed), true).unwrap(), Cascade);
        assert!(admin_step(Cancel, &job(Completed), true).is_err());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let err = admin_step(AdminAction::Resume, &job(JobState::Failed), false).unwrap_err();
        assert!(err.to_string().contains("use retry"), "{err}");
        let err = admin_step(AdminAction::Pause, &job(JobState::Completed), false).unwrap_err();
        assert!(err.to_string().contains("already finished"), "{err}");
    }
}
