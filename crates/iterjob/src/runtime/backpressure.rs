//! The default backpressure: signals every job obeys unless its kind opts out
//! ([`KindSettings::backpressure`](crate::KindSettings::backpressure)).
//!
//! Four signals hold jobs back:
//!
//! * **the operator's switch**: `iterjob throttle on [--queue Q] [--kind K] [--for D]`
//!   ([`Store::throttle_on`](crate::Store::throttle_on)), kept in the store;
//! * **the store's own health**: the latency of the worker's writes to the store
//!   (claims that took jobs, checkpoints, heartbeats, releases) against its running
//!   baseline ([`StoreLatency`]);
//! * **health checks** registered once for the whole app ([`HealthCheck`],
//!   [`Registry::health_check`](crate::Registry::health_check)): a downstream API, a
//!   queue depth — and the replica-lag checks of the store crates
//!   (`iterjob_postgres::ReplicaLag`, `iterjob_mysql::ReplicaLag`, `--replica-url`).
//!
//! Each worker reads them every [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval)
//! (one task per worker, not per run). A run checks them when it starts and then at
//! its kind's throttle cadence ([`KindSettings::throttle_check`](crate::KindSettings::throttle_check)):
//! while a signal covers its job, it checkpoints and goes back to its queue as an
//! interruption (reason `throttled`, no attempt used) for [`Backpressure::backoff`],
//! with the signal and since when as the job's last error (shown by `iterjob show`
//! and the dashboard). Workers claim less meanwhile: nothing of what a signal covers
//! (kinds that opt out are still claimed), and while the store is slow, one job per
//! backoff — a probe whose claim and release tell when the store has recovered; once
//! the signal clears, claims go out at once rather than at the next probe.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::error::BoxError;
use crate::store::{Millis, ThrottleSwitch, now_millis};

/// The default backpressure's settings ([`WorkerConfig::backpressure`](crate::WorkerConfig::backpressure)).
///
/// ```
/// use std::time::Duration;
/// use iterjob::{Backpressure, StoreLatency, WorkerConfig};
///
/// let mut config = WorkerConfig::default();
/// // back off when the store's writes take 8 times their usual time (and over 100 ms)
/// config.backpressure.store_latency = Some(StoreLatency {
///     factor: 8.0,
///     floor: Duration::from_millis(100),
/// });
/// // throttled jobs wait 10 s before they may be claimed again
/// config.backpressure.backoff = Duration::from_secs(10);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Backpressure {
    /// Throttle while the store's writes are slow. `None` turns the signal off.
    /// Default: [`StoreLatency::default`].
    pub store_latency: Option<StoreLatency>,
    /// How long a throttled job waits in its queue before it may be claimed again
    /// (and how often a worker probes a slow store). Default: 5 s: short enough
    /// that jobs are back within seconds of a signal clearing, long enough that a
    /// throttled job costs its store two writes per 5 s at most.
    pub backoff: Duration,
    /// How long a [`HealthCheck`] may take; one that takes longer counts as
    /// throttling (it cannot vouch for its service). Default: 5 s.
    pub check_timeout: Duration,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            store_latency: Some(StoreLatency::default()),
            backoff: Duration::from_secs(5),
            check_timeout: Duration::from_secs(5),
        }
    }
}

/// When the store counts as slow: the median latency of the worker's 7 newest
/// writes (of the last 15 s, at least 3 of them) above `factor` × their baseline and
/// above `floor`.
///
/// The baseline is a slowly moving average of the writes' latency while the store is
/// healthy, started from the median of the first 20; writes slower than the
/// threshold never move it, so a slow spell cannot become the new normal. The floor
/// keeps a store answering in a fraction of a millisecond (SQLite, a local server)
/// from being called slow when it takes a few milliseconds. A store slow from the
/// worker's start is its own baseline: this signal compares the store with itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreLatency {
    /// How many times its baseline the latency must be. Default: 4.
    pub factor: f64,
    /// The latency must also be above this. Default: 50 ms.
    pub floor: Duration,
}

impl Default for StoreLatency {
    fn default() -> Self {
        StoreLatency {
            factor: 4.0,
            floor: Duration::from_millis(50),
        }
    }
}

/// What a [`HealthCheck`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// All is well: jobs may run.
    Healthy,
    /// Jobs should back off; the text says why (shown with every job it throttles:
    /// "replica lag 12.4 s, above 2 s").
    Throttle(String),
}

/// A health check registered once for the whole app and applied to every kind that
/// does not opt out: each worker calls it every
/// [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval) and holds
/// jobs back while it answers [`Health::Throttle`]. An error, or no answer within
/// [`Backpressure::check_timeout`], counts as throttling: a check that cannot vouch
/// for its service does not let the load through.
///
/// ```
/// use iterjob::{BoxError, Health, HealthCheck, Registry};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// /// Holds jobs back while the outbox has more than 10,000 messages.
/// struct OutboxDepth(Arc<AtomicU64>);
///
/// #[iterjob::async_trait]
/// impl HealthCheck for OutboxDepth {
///     fn name(&self) -> &str {
///         "outbox-depth"
///     }
///     async fn check(&self) -> Result<Health, BoxError> {
///         let depth = self.0.load(Ordering::Relaxed);
///         Ok(if depth > 10_000 {
///             Health::Throttle(format!("outbox holds {depth} messages, above 10000"))
///         } else {
///             Health::Healthy
///         })
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.health_check(OutboxDepth(Arc::new(AtomicU64::new(0))));
/// ```
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// The check's name, unique in the app (shown with the jobs it throttles and in
    /// `/metrics`).
    fn name(&self) -> &str;

    /// Looks at the service.
    async fn check(&self) -> Result<Health, BoxError>;
}

/// Where a [`ThrottleSignal`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalSource {
    /// An operator's [`ThrottleSwitch`].
    Operator,
    /// The store's writes are slow ([`StoreLatency`]).
    StoreLatency,
    /// A [`HealthCheck`] (a replica's lag among them).
    HealthCheck,
}

impl SignalSource {
    /// The name in `/metrics` labels and JSON: `operator`, `store_latency`,
    /// `health_check`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalSource::Operator => "operator",
            SignalSource::StoreLatency => "store_latency",
            SignalSource::HealthCheck => "health_check",
        }
    }
}

/// A signal holding jobs back right now, as a worker sees it
/// ([`Worker::throttles`](crate::Worker::throttles)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThrottleSignal {
    /// Where it comes from.
    pub source: SignalSource,
    /// Its name: `operator`, `store-latency`, or the health check's name.
    pub name: String,
    /// The queue it covers; `None` for every queue.
    pub queue: Option<String>,
    /// The kind it covers; `None` for every kind.
    pub kind: Option<String>,
    /// Since when (milliseconds since the epoch).
    pub since: Millis,
    /// Why, for people.
    pub why: String,
}

impl ThrottleSignal {
    /// True when it covers a job of `queue` and `kind`.
    pub fn covers(&self, queue: &str, kind: &str) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue)
            && self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// What it covers, for people: `every job`, `queue "q"`, `kind "k" in queue "q"`.
    pub fn scope(&self) -> String {
        crate::store::throttles::scope_text(self.queue.as_deref(), self.kind.as_deref())
    }

    /// From an operator's switch.
    pub(crate) fn operator(switch: &ThrottleSwitch) -> Self {
        let mut why = format!(
            "an operator switched the throttle on for {}",
            switch.scope()
        );
        if let Some(reason) = &switch.reason {
            why.push_str(&format!(" ({reason})"));
        }
        match switch.until {
            Some(until) => why.push_str(&format!(", until {}", utc(until))),
            None => why.push_str(", until switched off (the `throttle off` command)"),
        }
        ThrottleSignal {
            source: SignalSource::Operator,
            name: "operator".into(),
            queue: switch.queue.clone(),
            kind: switch.kind.clone(),
            since: switch.since,
            why,
        }
    }

    /// The job's last error when this signal sends it back to its queue.
    pub(crate) fn message(&self, backoff: Duration) -> String {
        format!(
            "throttled by {} since {}: {}; back in the queue for {:?}, no attempt used \
             (KindSettings::backpressure(false) lets a kind run through)",
            match self.source {
                SignalSource::Operator => "the operator's switch".to_string(),
                SignalSource::StoreLatency => "the store's latency".to_string(),
                SignalSource::HealthCheck => format!("health check `{}`", self.name),
            },
            utc(self.since),
            self.why,
            backoff
        )
    }
}

/// `2026-12-06 20:31:02 UTC`.
pub(crate) fn utc(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// How long a sample of the store's latency counts.
const WINDOW: Duration = Duration::from_secs(15);
/// The newest samples (in the window) whose median is the verdict's figure.
const RECENT: usize = 7;
/// Samples needed in the window to change the verdict.
const MIN_SAMPLES: usize = 3;
/// Samples whose median starts the baseline.
const WARMUP: usize = 20;
/// Weight of a new sample in the baseline.
const BASELINE_WEIGHT: f64 = 0.02;
/// With no sample for this long, a slow verdict lapses (nothing left to protect).
const STALE: Duration = Duration::from_secs(30);

/// The latency of one worker's writes to its store, and the verdict on it.
#[derive(Debug)]
pub(crate) struct StoreHealth {
    config: Option<StoreLatency>,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    samples: VecDeque<(Instant, f64)>,
    warmup: Vec<f64>,
    /// Seconds; `None` until warmed up.
    baseline: Option<f64>,
    /// While slow: since when, and the last figures.
    slow_since: Option<Millis>,
    why: String,
}

impl StoreHealth {
    pub(crate) fn new(config: Option<StoreLatency>) -> Self {
        StoreHealth {
            config,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One write to the store took `took`.
    pub(crate) fn observe(&self, took: Duration) {
        let Some(config) = self.config else {
            return;
        };
        let secs = took.as_secs_f64();
        let mut state = self.lock();
        let now = Instant::now();
        state.samples.push_back((now, secs));
        while state.samples.len() > 256 {
            state.samples.pop_front();
        }
        match state.baseline {
            None => {
                state.warmup.push(secs);
                if state.warmup.len() >= WARMUP {
                    state.baseline = Some(median(&mut state.warmup));
                    state.warmup = Vec::new();
                }
            }
            Some(base) => {
                if state.slow_since.is_none() && secs <= threshold(&config, base) {
                    state.baseline = Some(base + BASELINE_WEIGHT * (secs - base));
                }
            }
        }
    }

    /// The verdict now: `Some` while the store is slow.
    pub(crate) fn evaluate(&self) -> Option<ThrottleSignal> {
        let config = self.config?;
        let mut state = self.lock();
        let now = Instant::now();
        let newest = state.samples.back().map(|(at, _)| *at);
        while state
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            state.samples.pop_front();
        }
        let base = state.baseline?;
        let limit = threshold(&config, base);
        if state.samples.len() >= MIN_SAMPLES {
            let mut recent: Vec<f64> = state
                .samples
                .iter()
                .rev()
                .take(RECENT)
                .map(|(_, s)| *s)
                .collect();
            let typical = median(&mut recent);
            if typical > limit {
                let engaged = state.slow_since.is_none();
                state.slow_since.get_or_insert_with(now_millis);
                state.why = format!(
                    "the store's writes take {} (median of the last {}), {:.1}× their \
                     baseline of {} (threshold {:.1}×, at least {:?})",
                    ms(typical),
                    recent.len(),
                    typical / base.max(1e-9),
                    ms(base),
                    config.factor,
                    config.floor
                );
                if engaged {
                    tracing::warn!(why = %state.why, "the store is slow: jobs are held back until its writes recover");
                }
            } else if state.slow_since.take().is_some() {
                tracing::info!(
                    latency = %ms(typical),
                    "the store's writes are back to their usual time; jobs may run"
                );
            }
        } else if newest.is_none_or(|at| now.duration_since(at) > STALE) {
            state.slow_since = None;
        }
        let since = state.slow_since?;
        Some(ThrottleSignal {
            source: SignalSource::StoreLatency,
            name: "store-latency".into(),
            queue: None,
            kind: None,
            since,
            why: state.why.clone(),
        })
    }
}

/// Seconds above which a write is slow.
fn threshold(config: &StoreLatency, base: f64) -> f64 {
    (base * config.factor).max(config.floor.as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1000.0)
}

/// Runs the app's health checks every `interval`, keeping their verdicts in `out`
/// (one signal per check that throttles, with since when).
pub(crate) async fn run_checks(
    checks: Vec<Arc<dyn HealthCheck>>,
    interval: Duration,
    timeout: Duration,
    out: Arc<Mutex<Vec<ThrottleSignal>>>,
) {
    let mut since: HashMap<String, Millis> = HashMap::new();
    loop {
        let results = futures::future::join_all(checks.iter().map(|check| async move {
            let verdict = match tokio::time::timeout(timeout, check.check()).await {
                Ok(Ok(health)) => health,
                Ok(Err(error)) => Health::Throttle(format!(
                    "the check failed, so it cannot vouch for its service: {}",
                    crate::error::error_chain(&*error)
                )),
                Err(_) => Health::Throttle(format!(
                    "the check did not answer within {timeout:?}, so it cannot vouch for its \
                     service"
                )),
            };
            (check.name().to_string(), verdict)
        }))
        .await;
        let mut signals = Vec::new();
        for (name, verdict) in results {
            match verdict {
                Health::Healthy => {
                    if since.remove(&name).is_some() {
                        tracing::info!(check = %name, "health check passes again; jobs may run");
                    }
                }
                Health::Throttle(why) => {
                    let started = *since.entry(name.clone()).or_insert_with(|| {
                        tracing::warn!(check = %name, %why, "health check throttles every job");
                        now_millis()
                    });
                    signals.push(ThrottleSignal {
                        source: SignalSource::HealthCheck,
                        name,
                        queue: None,
                        kind: None,
                        since: started,
                        why,
                    });
                }
            }
        }
        *out.lock().unwrap_or_else(|e| e.into_inner()) = signals;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slow_writes_engage_and_fast_ones_release() {
        let health = StoreHealth::new(Some(StoreLatency::default()));
        for _ in 0..WARMUP {
            health.observe(ms(2));
        }
        assert_eq!(health.evaluate(), None, "healthy at its baseline");
        // a single spike changes nothing
        health.observe(ms(400));
        assert_eq!(health.evaluate(), None);
        for _ in 0..30 {
            health.observe(ms(300));
        }
        let signal = health.evaluate().expect("slow");
        assert_eq!(signal.source, SignalSource::StoreLatency);
        assert!(signal.why.contains("300.0 ms"), "{}", signal.why);
        // the slow spell did not move the baseline
        assert!(health.lock().baseline.unwrap() < 0.003);
        for _ in 0..40 {
            health.observe(ms(2));
        }
        assert_eq!(health.evaluate(), None, "recovered");
    }

    #[test]
    fn the_floor_keeps_fast_stores_from_being_called_slow() {
        let health = StoreHealth::new(Some(StoreLatency::default()));
        for _ in 0..WARMUP {
            health.observe(Duration::from_micros(100));
        }
        for _ in 0..20 {
            health.observe(ms(20)); // 200× the baseline, under the 50 ms floor
        }
        assert_eq!(health.evaluate(), None);
        let off = StoreHealth::new(None);
        off.observe(ms(10_000));
        assert_eq!(off.evaluate(), None);
    }

    #[test]
    fn operator_signals_say_what_and_until_when() {
        let mut switch = ThrottleSwitch::new(Some("bulk".into()), None, 0);
        switch.reason = Some("db maintenance".into());
        let signal = ThrottleSignal::operator(&switch);
        assert!(signal.covers("bulk", "any"));
        assert!(!signal.covers("default", "any"));
        let message = signal.message(Duration::from_secs(5));
        assert!(message.contains("queue \"bulk\""), "{message}");
        assert!(message.contains("db maintenance"), "{message}");
        assert!(message.contains("`throttle off`"), "{message}");
    }
}
