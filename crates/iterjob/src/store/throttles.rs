//! The operators' throttle switches: `iterjob throttle on [--queue Q] [--kind K]
//! [--for 10m]`, kept in the store and obeyed by every worker.
//!
//! A switch is the operator's lever of the default backpressure (see
//! [`Backpressure`](crate::Backpressure)): while one is on, the jobs it covers stop
//! at their next throttle check, checkpoint, and go back to their queue as an
//! interruption (reason `throttled`, no attempt used), and workers stop claiming
//! them, until it is switched off or its time is up. Kinds that opt out
//! ([`KindSettings::backpressure`](crate::KindSettings::backpressure)) keep running.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Millis, check_queue_name};

/// One operator throttle switch: on for the jobs of `queue` (every queue when
/// `None`) and `kind` (every kind when `None`), since `since`, until `until` (or
/// until switched off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleSwitch {
    /// The queue it covers; `None` for every queue.
    pub queue: Option<String>,
    /// The kind it covers; `None` for every kind.
    pub kind: Option<String>,
    /// When it was switched on (kept when a switch already on is switched on again).
    pub since: Millis,
    /// When it switches itself off; `None` to stay on until switched off.
    pub until: Option<Millis>,
    /// Why, in the operator's words (shown with every job it throttles).
    pub reason: Option<String>,
}

impl ThrottleSwitch {
    /// A switch covering `queue` and `kind` (`None`: all), on from `since`.
    pub fn new(queue: Option<String>, kind: Option<String>, since: Millis) -> Self {
        ThrottleSwitch {
            queue,
            kind,
            since,
            until: None,
            reason: None,
        }
    }

    /// True when the switch covers a job of `queue` and `kind` at `now`.
    pub fn covers(&self, queue: &str, kind: &str, now: Millis) -> bool {
        self.is_on(now)
            && self.queue.as_deref().is_none_or(|q| q == queue)
            && self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// True until its `until` (if any) has passed.
    pub fn is_on(&self, now: Millis) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// What it covers, for people: `every job`, `queue "q"`, `kind "k" in queue "q"`.
    pub fn scope(&self) -> String {
        scope_text(self.queue.as_deref(), self.kind.as_deref())
    }

    /// Checks the names and the time window.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad queue or kind name, or an `until` not after
    /// `since`.
    pub fn validate(&self) -> Result<()> {
        if let Some(queue) = &self.queue {
            check_queue_name(queue)?;
        }
        if let Some(kind) = &self.kind
            && (kind.is_empty() || kind.len() > 190 || kind.chars().any(char::is_control))
        {
            return Err(Error::Config(format!(
                "a throttle switch names kind {kind:?}: give a kind's name (1 to 190 \
                 characters, no control characters), or leave --kind off to cover every kind"
            )));
        }
        if let Some(until) = self.until
            && until <= self.since
        {
            return Err(Error::Config(
                "a throttle switch must end after it starts: give a positive duration \
                 (--for 10m)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What a queue and kind (`None`: every one) cover, for people: `every job`,
/// `queue "q"`, `kind "k" in queue "q"` (names quoted, control characters escaped).
pub(crate) fn scope_text(queue: Option<&str>, kind: Option<&str>) -> String {
    match (queue, kind) {
        (None, None) => "every job".to_string(),
        (Some(q), None) => format!("queue {q:?}"),
        (None, Some(k)) => format!("kind {k:?}"),
        (Some(q), Some(k)) => format!("kind {k:?} in queue {q:?}"),
    }
}
