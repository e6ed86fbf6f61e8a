//! The runtime's metrics, through the [`metrics`] facade: nothing is recorded (and
//! next to nothing is spent) until the application installs a recorder, such as the
//! Prometheus exporter of `iterjob-dashboard`.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `iterjob_items_processed_total` | counter | `kind` | items made durable (counted at each checkpoint and release) |
//! | `iterjob_checkpoint_seconds` | histogram | `kind` | time to write one checkpoint |
//! | `iterjob_claim_seconds` | histogram | | time of one claim round trip |
//! | `iterjob_jobs_claimed_total` | counter | | jobs claimed |
//! | `iterjob_runs_total` | counter | `kind`, `outcome` | runs ended, by how they ended |
//! | `iterjob_interruptions_total` | counter | `kind`, `reason` | runs interrupted, by reason |
//! | `iterjob_throttle_active` | gauge | `source`, `name`, `queue`, `kind` | 1 while a backpressure signal holds jobs back (`*`: every queue or kind), 0 after |
//! | `iterjob_throttle_since_seconds` | gauge | `source`, `name`, `queue`, `kind` | when that signal started (Unix time) |
//! | `iterjob_throttled_runs_total` | counter | `kind`, `source` | runs sent back to their queue by a backpressure signal |

use std::time::Duration;

use crate::runtime::RunEnd;
use crate::runtime::backpressure::ThrottleSignal;

/// Items that became durable in a checkpoint or release.
pub(crate) fn items_processed(kind: &'static str, items: u64) {
    if items > 0 {
        metrics::counter!("iterjob_items_processed_total", "kind" => kind).increment(items);
    }
}

/// One checkpoint write took `took`.
pub(crate) fn checkpoint_written(kind: &'static str, took: Duration) {
    metrics::histogram!("iterjob_checkpoint_seconds", "kind" => kind).record(took.as_secs_f64());
}

/// One claim round trip took `took` and returned `claimed` jobs.
pub(crate) fn claimed(took: Duration, claimed: usize) {
    metrics::histogram!("iterjob_claim_seconds").record(took.as_secs_f64());
    if claimed > 0 {
        metrics::counter!("iterjob_jobs_claimed_total").increment(claimed as u64);
    }
}

/// A run of a job of `kind` ended.
pub(crate) fn run_ended(kind: &str, end: RunEnd) {
    let outcome = match end {
        RunEnd::Completed => "completed",
        RunEnd::Interrupted(_) => "interrupted",
        RunEnd::Paused => "paused",
        RunEnd::Cancelled => "cancelled",
        RunEnd::Retrying => "retrying",
        RunEnd::Failed => "failed",
        RunEnd::Partitioned => "partitioned",
        RunEnd::LeaseLost => "lease_lost",
        RunEnd::ReleaseFailed => "release_failed",
    };
    let kind = kind.to_string();
    metrics::counter!("iterjob_runs_total", "kind" => kind.clone(), "outcome" => outcome)
        .increment(1);
    let reason = match end {
        RunEnd::Interrupted(reason) => reason.as_str(),
        RunEnd::Paused => "pause",
        RunEnd::Cancelled => "cancel",
        _ => return,
    };
    metrics::counter!("iterjob_interruptions_total", "kind" => kind, "reason" => reason)
        .increment(1);
}

fn signal_labels(signal: &ThrottleSignal) -> [(&'static str, String); 4] {
    [
        ("source", signal.source.as_str().to_string()),
        ("name", signal.name.clone()),
        ("queue", signal.queue.clone().unwrap_or_else(|| "*".into())),
        ("kind", signal.kind.clone().unwrap_or_else(|| "*".into())),
    ]
}

/// The worker's backpressure signals changed from `old` to `new`.
pub(crate) fn throttles_changed(old: &[ThrottleSignal], new: &[ThrottleSignal]) {
    let key = |s: &ThrottleSignal| (s.source, s.name.clone(), s.queue.clone(), s.kind.clone());
    for signal in old {
        if !new.iter().any(|n| key(n) == key(signal)) {
            metrics::gauge!("iterjob_throttle_active", &signal_labels(signal)).set(0.0);
        }
    }
    for signal in new {
        let labels = signal_labels(signal);
        metrics::gauge!("iterjob_throttle_active", &labels).set(1.0);
        metrics::gauge!("iterjob_throttle_since_seconds", &labels)
            .set(signal.since as f64 / 1000.0);
    }
}

/// A run of `kind` was sent back to its queue by `signal`.
pub(crate) fn throttled(kind: &'static str, signal: &ThrottleSignal) {
    metrics::counter!("iterjob_throttled_runs_total", "kind" => kind, "source" => signal.source.as_str())
        .increment(1);
}
