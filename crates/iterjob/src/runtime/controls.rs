//! What operators set in the store and every worker obeys — paused queues and
//! throttle switches — together with the rest of the default backpressure (the
//! store's latency, the app's health checks). Each worker reads them every
//! [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval) and
//! hands them to its runs through a watch channel, so a few small queries per worker
//! (not per run) keep every run within about a second of an operator's switch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::runtime::backpressure::{SignalSource, StoreHealth, ThrottleSignal};
use crate::runtime::telemetry;
use crate::store::{QueuePauseMode, Store, now_millis};

/// The operators' switches and the backpressure signals, as last read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Controls {
    /// Paused queues and what the pause does to their running jobs.
    paused: HashMap<String, QueuePauseMode>,
    /// Signals holding jobs back: operator switches, then store latency and health
    /// checks.
    pub(crate) throttles: Vec<ThrottleSignal>,
}

/// What a worker's next claim asks for, given the signals.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClaimPlan {
    pub(crate) kinds: Vec<String>,
    pub(crate) queues: Vec<String>,
    /// The store is slow: claim one job, then wait a backoff (a probe).
    pub(crate) probe: bool,
}

impl Controls {
    /// True when no job of `queue` may start.
    pub(crate) fn is_paused(&self, queue: &str) -> bool {
        self.paused.contains_key(queue)
    }

    /// True when the runs of `queue` must stop at their next item.
    pub(crate) fn interrupts(&self, queue: &str) -> bool {
        self.paused.get(queue) == Some(&QueuePauseMode::Interrupt)
    }

    /// The first signal covering a job of `queue` and `kind`.
    pub(crate) fn throttle_for(&self, queue: &str, kind: &str) -> Option<&ThrottleSignal> {
        self.throttles.iter().find(|s| s.covers(queue, kind))
    }

    /// What to claim: of `kinds`, those no signal covers in every queue (kinds in
    /// `exempt` always), and of `queues`, those no signal covers for every kind
    /// (only when every kind left obeys: an exempt kind is claimed in every queue,
    /// and a throttled job of another kind claimed with it goes straight back).
    /// While the store is slow, a probe.
    pub(crate) fn claim_plan(
        &self,
        kinds: &[String],
        exempt: &[&str],
        queues: &[String],
    ) -> ClaimPlan {
        let is_exempt = |k: &str| exempt.contains(&k);
        let mut probe = false;
        let mut everything = false;
        for signal in &self.throttles {
            if signal.queue.is_none() && signal.kind.is_none() {
                if signal.source == SignalSource::StoreLatency {
                    probe = true;
                } else {
                    everything = true;
                }
            }
        }
        let kinds: Vec<String> = kinds
            .iter()
            .filter(|k| {
                is_exempt(k)
                    || (!everything
                        && !self
                            .throttles
                            .iter()
                            .any(|s| s.queue.is_none() && s.kind.as_deref() == Some(k.as_str())))
            })
            .cloned()
            .collect();
        let queues = if kinds.iter().any(|k| is_exempt(k)) {
            queues.to_vec()
        } else {
            queues
                .iter()
                .filter(|q| {
                    !self
                        .throttles
                        .iter()
                        .any(|s| s.kind.is_none() && s.queue.as_deref() == Some(q.as_str()))
                })
                .cloned()
                .collect()
        };
        ClaimPlan {
            kinds,
            queues,
            probe,
        }
    }
}

/// The receiving end runs hold.
pub(crate) type ControlsWatch = watch::Receiver<Arc<Controls>>;

/// A channel with no switch set, for runs outside a worker's loop.
pub(crate) fn channel() -> (watch::Sender<Arc<Controls>>, ControlsWatch) {
    watch::channel(Arc::new(Controls::default()))
}

/// Reads the switches every `interval` until the receivers are gone, adding the
/// store's latency verdict (`health`) and the health checks' (`checks`, kept up to
/// date by their own task). A store that fails to answer leaves the last switches
/// in force (logged once per failure streak).
pub(crate) async fn poll(
    store: Arc<dyn Store>,
    interval: Duration,
    sender: Arc<watch::Sender<Arc<Controls>>>,
    health: Arc<StoreHealth>,
    checks: Arc<Mutex<Vec<ThrottleSignal>>>,
) {
    let mut failing = false;
    let mut paused = HashMap::new();
    let mut switches = Vec::new();
    loop {
        let now = now_millis();
        // one after the other: one connection of the store's pool at a time
        let pauses = store.queue_pauses().await;
        let read_switches = store.throttle_switches(now).await;
        match (pauses, read_switches) {
            (Ok(pauses), Ok(read)) => {
                if failing {
                    tracing::info!("reading paused queues and throttle switches works again");
                    failing = false;
                }
                paused = pauses.into_iter().map(|p| (p.queue, p.mode)).collect();
                switches = read;
            }
            (Err(error), _) | (_, Err(error)) => {
                if !failing {
                    tracing::warn!(
                        %error,
                        "reading paused queues and throttle switches failed; keeping the last known"
                    );
                    failing = true;
                }
            }
        }
        let mut throttles: Vec<ThrottleSignal> = switches
            .iter()
            .filter(|s| s.is_on(now))
            .map(ThrottleSignal::operator)
            .collect();
        throttles.extend(health.evaluate());
        throttles.extend(
            checks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let controls = Controls {
            paused: paused.clone(),
            throttles,
        };
        sender.send_if_modified(|current| {
            if **current == controls {
                false
            } else {
                telemetry::throttles_changed(&current.throttles, &controls.throttles);
                *current = Arc::new(controls);
                true
            }
        });
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(source: SignalSource, queue: Option<&str>, kind: Option<&str>) -> ThrottleSignal {
        ThrottleSignal {
            source,
            name: "x".into(),
            queue: queue.map(Into::into),
            kind: kind.map(Into::into),
            since: 0,
            why: "why".into(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn claims_leave_out_what_signals_cover() {
        let kinds = names(&["a", "b", "c"]);
        let queues = names(&["default", "bulk"]);
        let mut controls = Controls::default();
        let all = controls.claim_plan(&kinds, &[], &queues);
        assert_eq!(
            (all.kinds.len(), all.queues.len(), all.probe),
            (3, 2, false)
        );

        controls.throttles = vec![
            signal(SignalSource::Operator, None, Some("a")),
            signal(SignalSource::Operator, Some("bulk"), None),
        ];
        let plan = controls.claim_plan(&kinds, &[], &queues);
        assert_eq!(plan.kinds, names(&["b", "c"]));
        assert_eq!(plan.queues, names(&["default"]));
        // an exempt kind keeps every queue
        let plan = controls.claim_plan(&kinds, &["c"], &queues);
        assert_eq!(plan.queues, queues);

        controls.throttles = vec![signal(SignalSource::HealthCheck, None, None)];
        let plan = controls.claim_plan(&kinds, &["b"], &queues);
        assert_eq!(plan.kinds, names(&["b"]), "only the exempt kind");
        assert!(controls.claim_plan(&kinds, &[], &queues).kinds.is_empty());

        controls.throttles = vec![signal(SignalSource::StoreLatency, None, None)];
        let plan = controls.claim_plan(&kinds, &[], &queues);
        assert_eq!((plan.kinds.len(), plan.probe), (3, true));
        assert!(controls.throttle_for("default", "a").is_some());
    }
}
