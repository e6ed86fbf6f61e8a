//! Pacing between items: shared rate limits ([`RateLimit`]) and adaptive throttling
//! on the work's latency ([`AdaptiveThrottle`]).
//!
//! The run loop asks a [`Pacer`] before each item (`before_item`: wait for the rate
//! limit's reservation and the adaptive delay, watching the run's signals) and tells
//! it after each item (`after_item`: feed the latency to the controller, which may
//! ask the run to back off). A kind with neither setting pays two branches per item.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, JobError, Result};
use crate::job::{Job, KindSettings};
use crate::runtime::live::LiveJob;
use crate::runtime::signals::Signals;
use crate::store::Store;

/// A rate limit on a kind's items, shared by every job of the kind on every worker
/// of every process that uses the same store (see [`Store::rate_acquire`]).
///
/// Items are counted as [`Job::count_items`] counts them: a batch of 100 uses 100 of
/// the limit. Jobs of one kind share the bucket named after the kind; give several
/// kinds the same [`RateLimit::key`] to make them share one bucket (one API quota for
/// all the jobs that call that API).
///
/// ```
/// use std::time::Duration;
/// use iterjob::{KindSettings, RateLimit};
///
/// // at most 500 items per second over all workers, all processes
/// let settings = KindSettings::default().rate_limit(RateLimit::per_second(500));
/// // 1,200 calls a minute, shared with every other kind that uses this key
/// let shared = RateLimit::per_minute(1_200).key("shopify-api");
/// assert_eq!(shared.interval(), Duration::from_millis(50));
/// ```
///
/// How it works: a run reserves a chunk of the limit at a time, in one atomic
/// statement on the store, and spends it one `interval` apart: about 100 ms of its
/// own pace (at most 100 ms of the limit, at least the item at hand), so a job
/// makes about ten round trips a second for its rate limit, whatever the rate, and
/// a job slower than the limit holds little of it ahead of time. Units a run
/// reserved but did not use when it stops are lost (at most one chunk per run). A
/// store that keeps refusing reservations (unreachable, not migrated) for as long as
/// a lease ends the run with a retryable error naming the bucket and the store's
/// error. The default bucket is not shared across stores
/// (two databases are two buckets), and the [`Store::rate_acquire`] default
/// implementation, for stores that do not implement it, limits each process alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    items: u64,
    per: Duration,
    key: Option<String>,
}

impl RateLimit {
    /// At most `items` per `per`, evenly spaced (no bursts).
    pub fn new(items: u64, per: Duration) -> Self {
        RateLimit {
            items,
            per,
            key: None,
        }
    }

    /// At most `items` per second.
    pub fn per_second(items: u64) -> Self {
        Self::new(items, Duration::from_secs(1))
    }

    /// At most `items` per minute.
    pub fn per_minute(items: u64) -> Self {
        Self::new(items, Duration::from_secs(60))
    }

    /// Shares the bucket named `key` (instead of the kind's name) with every kind
    /// whose limit names the same key. Kinds sharing a key should give it the same
    /// rate: each reservation is made at the rate of the kind that makes it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The time one item is worth: `per / items`.
    pub fn interval(&self) -> Duration {
        let items = u32::try_from(self.items.max(1)).unwrap_or(u32::MAX);
        self.per / items
    }

    /// The bucket's key for kind `kind`: the custom key, or the kind's name.
    pub fn bucket(&self, kind: &str) -> String {
        self.key.clone().unwrap_or_else(|| kind.to_string())
    }

    pub(crate) fn validate(&self, kind: &str) -> Result<()> {
        if self.items == 0 || self.per.is_zero() {
            return Err(Error::Config(format!(
                "job kind `{kind}`: a rate limit of {} items per {:?} lets nothing run; \
                 give at least 1 item per a non-zero period (RateLimit::per_second(n))",
                self.items, self.per
            )));
        }
        if self.interval().is_zero() {
            return Err(Error::Config(format!(
                "job kind `{kind}`: a rate limit of {} items per {:?} is more than one item \
                 per nanosecond; leave the rate limit off instead",
                self.items, self.per
            )));
        }
        if self.key.as_deref() == Some("") {
            return Err(Error::Config(format!(
                "job kind `{kind}`: the rate limit's key is empty; name the bucket, or leave \
                 the key off to use the kind's name"
            )));
        }
        Ok(())
    }
}

/// Adaptive throttling on the latency of a kind's work: when the work slows down
/// (a database under load, a downstream service struggling), the job slows down with
/// it, and speeds up again when the latency recovers.
///
/// The runtime measures each call of [`Job::process`] (one item, or one batch) and
/// keeps a moving average of it (an EWMA, the newest call weighing half). While the
/// newest call and the average are both above the target, the delay it puts between
/// two calls grows by half each call (starting at a tenth of the target, at least
/// 1 ms); after a call within the target, the delay halves, down to zero; a single
/// slow call in a good spell (a spike the average absorbs) leaves it as it is. So the
/// job slows down step by step while the work stays slow, and speeds up faster than
/// it slowed down once the work is fast again. A delay beyond [`AdaptiveThrottle::max_delay`] means the
/// work is not recovering: the run checkpoints and ends interrupted
/// ([`InterruptReason::Throttled`](crate::InterruptReason::Throttled)), freeing its
/// worker, and the job is claimable again after [`AdaptiveThrottle::backoff`] (its
/// next run starts with no delay, and measures again).
///
/// The current delay shows on [`RunningJob::throttle_delay`](crate::RunningJob::throttle_delay).
///
/// ```
/// use std::time::Duration;
/// use iterjob::{AdaptiveThrottle, KindSettings};
///
/// // writes should take about 20 ms; slow down when they take longer
/// let settings = KindSettings::default().target_latency(Duration::from_millis(20));
///
/// // the same, giving the worker back once the delay passes 2 s, for a minute
/// let settings = KindSettings::default().adaptive_throttle(
///     AdaptiveThrottle::new(Duration::from_millis(20))
///         .max_delay(Duration::from_secs(2))
///         .backoff(Duration::from_secs(60)),
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdaptiveThrottle {
    target: Duration,
    max_delay: Option<Duration>,
    backoff: Duration,
}

impl AdaptiveThrottle {
    /// Throttling to keep the work's latency at or below `target`.
    pub fn new(target: Duration) -> Self {
        AdaptiveThrottle {
            target,
            max_delay: None,
            backoff: Duration::from_secs(30),
        }
    }

    /// Past this delay between items the run backs off entirely. Default: 10 × the
    /// target, at least 1 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = Some(d);
        self
    }

    /// How long a job that backed off waits before it is claimable again.
    /// Default: 30 s.
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }

    /// The target latency of one call of the work.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// The delay past which the run backs off (the default filled in).
    pub fn limit(&self) -> Duration {
        self.max_delay
            .unwrap_or_else(|| (self.target * 10).max(Duration::from_secs(1)))
    }

    pub(crate) fn validate(&self, kind: &str) -> Result<()> {
        if self.target.is_zero() {
            return Err(Error::Config(format!(
                "job kind `{kind}`: a target latency of zero can never be met; give the \
                 latency the work should stay under (KindSettings::target_latency)"
            )));
        }
        if self.max_delay.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config(format!(
                "job kind `{kind}`: an adaptive throttle max delay of zero backs off at the \
                 first slow item; give a positive delay, or leave it to the default"
            )));
        }
        Ok(())
    }
}

/// Checks a kind's pacing settings; the error names the kind and the setting.
pub(crate) fn validate(kind: &str, settings: &KindSettings) -> Result<()> {
    if let Some(limit) = &settings.rate_limit {
        limit.validate(kind)?;
    }
    if let Some(adaptive) = &settings.adaptive_throttle {
        adaptive.validate(kind)?;
    }
    Ok(())
}

/// Longest a paced wait sleeps before it looks at the run's signals again.
const SLICE: Duration = Duration::from_millis(50);

/// How much of the rate limit a worker reserves per round trip to the store.
const CHUNK_TIME: Duration = Duration::from_millis(100);

/// Weight of the newest latency in the moving average.
const EWMA_WEIGHT: f64 = 0.5;

/// The delay grows by this factor per call while the latency is above target…
const GROW: f64 = 1.5;

/// …and shrinks by this one per call while it is not.
const SHRINK: f64 = 0.5;

/// How long to wait before asking a failing store for a reservation again (doubling
/// up to 5 s).
const STORE_RETRY: Duration = Duration::from_millis(200);

/// The pacing of one run.
pub(crate) struct Pacer {
    rate: Option<RateClient>,
    adaptive: Option<Controller>,
    live: Arc<LiveJob>,
    /// When the item about to be processed started (set only when adaptive).
    item_started: Option<Instant>,
    /// How long the store may keep refusing reservations before the run fails.
    give_up: Duration,
}

impl Pacer {
    /// The pacing of a run of `job`, from its kind's settings; `lease` is how long
    /// the store may refuse reservations before the run fails.
    pub(crate) fn new<J: Job>(
        job: &J,
        store: &Arc<dyn Store>,
        live: &Arc<LiveJob>,
        lease: Duration,
    ) -> Self {
        let settings = job.settings();
        Pacer {
            rate: settings
                .rate_limit
                .map(|limit| RateClient::new(J::KIND, &limit, store)),
            adaptive: settings.adaptive_throttle.map(Controller::new),
            live: Arc::clone(live),
            item_started: None,
            give_up: lease,
        }
    }

    /// True when the kind has a rate limit or adaptive throttling: the run loop
    /// skips [`Pacer::before_item`] (and its await) otherwise.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.rate.is_some() || self.adaptive.is_some()
    }

    /// Waits until the next item (worth `count` items of the rate limit) may start.
    /// `Err(Stop::Signals)` when a signal was raised meanwhile: the caller acts on the
    /// flags (taken from `signals`) and, if the run goes on, calls this again; the
    /// wait resumes where it was. `Err(Stop::Failed)` when the store has refused
    /// reservations for as long as a lease: the run ends with that error (and is
    /// retried as usual).
    pub(crate) async fn before_item(&mut self, count: u64, signals: &Signals) -> Result<(), Stop> {
        if let Some(rate) = &mut self.rate {
            while rate.available < count {
                match rate.reserve(count).await {
                    Ok(()) => rate.failing = None,
                    Err(error) => {
                        let (since, retry) = rate.failing.unwrap_or((Instant::now(), STORE_RETRY));
                        if since.elapsed() >= self.give_up {
                            rate.failing = None;
                            return Err(Stop::Failed(JobError::retryable(format!(
                                "the store refused reservations from rate limit `{}` for {:?} \
                                 (last error: {error}); check that the store is reachable and \
                                 migrated (a custom store must implement Store::rate_acquire \
                                 or leave it to the default)",
                                rate.key, self.give_up
                            ))));
                        }
                        tracing::warn!(key = %rate.key, %error, retry_in = ?retry, "rate limit reservation failed");
                        rate.failing = Some((since, (retry * 2).min(Duration::from_secs(5))));
                        sleep_watching(Instant::now() + retry, signals).await?;
                    }
                }
            }
        }
        let mut not_before = None;
        if let Some(rate) = &self.rate {
            not_before = Some(rate.next_permit);
        }
        if let Some(adaptive) = &self.adaptive {
            not_before = not_before.max(Some(adaptive.not_before));
        }
        if let Some(until) = not_before {
            sleep_watching(until, signals).await?;
        }
        if let Some(rate) = &mut self.rate {
            rate.spend(count);
        }
        if self.adaptive.is_some() {
            self.item_started = Some(Instant::now());
        }
        Ok(())
    }

    /// After an item was processed: feeds its latency to the adaptive controller.
    /// `Some(backoff)` when the run should end throttled and run again after
    /// `backoff`.
    #[inline]
    pub(crate) fn after_item(&mut self) -> Option<Duration> {
        let adaptive = self.adaptive.as_mut()?;
        let latency = self.item_started.take()?.elapsed();
        let delay = adaptive.observe(latency);
        self.live.set_throttle_delay(delay);
        if delay > adaptive.settings.limit() {
            tracing::info!(
                kind = %self.live.kind,
                job = self.live.id,
                ?delay,
                average_latency = ?adaptive.average(),
                target = ?adaptive.settings.target(),
                "latency stays above target; backing off"
            );
            return Some(adaptive.settings.backoff);
        }
        None
    }
}

/// Why [`Pacer::before_item`] returned before the item may start.
#[derive(Debug)]
pub(crate) enum Stop {
    /// These signals were raised (and taken): act on them, then ask again.
    Signals(u32),
    /// The rate limit cannot be reserved: end the run with this error.
    Failed(JobError),
}

/// Sleeps until `until` in slices, returning early with the raised flags.
async fn sleep_watching(until: Instant, signals: &Signals) -> Result<(), Stop> {
    loop {
        let flags = signals.take();
        if flags != 0 {
            return Err(Stop::Signals(flags));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::time::sleep_until(until.min(now + SLICE)).await;
    }
}

/// `at + d`, or a century after `at` when that overflows (a limit of one item a
/// year, a store answering with a wait of millennia).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// `interval × n`, saturating.
fn times(interval: Duration, n: u64) -> Duration {
    interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The client side of a shared rate limit: units reserved from the store, spent one
/// interval apart.
///
/// A reservation asks for about what the run spent in the last [`CHUNK_TIME`] (at
/// least one unit, at most `CHUNK_TIME` of the limit), so a run slower than the limit
/// holds few units ahead of time: units a run holds are units nobody else may use
/// until it spends them, and a run that stalls spends them late, all at once.
struct RateClient {
    store: Arc<dyn Store>,
    key: String,
    interval: Duration,
    /// Most units reserved per round trip: [`CHUNK_TIME`] of the limit (at least 1).
    max_chunk: u64,
    /// Units the next reservation asks for (at least 1, at most `max_chunk`).
    chunk: u64,
    /// Units reserved and not yet spent.
    available: u64,
    /// When the next reserved unit may be spent.
    next_permit: Instant,
    /// The last reservation: when its first unit was usable, and the units on hand
    /// then; to see how fast the run spends them.
    last: Option<(Instant, u64)>,
    /// While the store refuses reservations: since when, and the next retry delay.
    failing: Option<(Instant, Duration)>,
}

impl RateClient {
    fn new(kind: &str, limit: &RateLimit, store: &Arc<dyn Store>) -> Self {
        let interval = limit.interval();
        let max_chunk = (CHUNK_TIME.as_nanos() / interval.as_nanos().max(1)).max(1);
        RateClient {
            store: Arc::clone(store),
            key: limit.bucket(kind),
            interval,
            max_chunk: u64::try_from(max_chunk).unwrap_or(u64::MAX),
            chunk: 1,
            available: 0,
            next_permit: Instant::now(),
            last: None,
            failing: None,
        }
    }

    /// Reserves enough units for an item worth `count`, at least a chunk.
    async fn reserve(&mut self, count: u64) -> Result<()> {
        if let Some((usable_from, on_hand)) = self.last {
            let spent = on_hand.saturating_sub(self.available);
            let took = Instant::now().saturating_duration_since(usable_from);
            self.chunk = next_chunk(spent, took, self.chunk, self.max_chunk);
        }
        let want = self.chunk.max(count - self.available);
        let asked = Instant::now();
        let wait = self
            .store
            .rate_acquire(&self.key, want, self.interval)
            .await?;
        // The store measured `wait` somewhere between asking and answering; counting
        // from the ask errs towards starting early by at most one round trip, from
        // the answer towards starting late. Late wastes the limit, early is bounded
        // by the round trip: start from the ask.
        let start = later(asked, wait);
        // Units left over are spent just before the new ones.
        let leftover = times(self.interval, self.available);
        let from = start.checked_sub(leftover).unwrap_or(start);
        self.next_permit = if self.available == 0 {
            start
        } else {
            self.next_permit.max(from)
        };
        self.available += want;
        self.last = Some((self.next_permit, self.available));
        Ok(())
    }

    /// Spends `count` reserved units.
    fn spend(&mut self, count: u64) {
        self.available -= count;
        self.next_permit = later(self.next_permit, times(self.interval, count));
    }
}

/// The units to reserve next, from how fast the run spent the last reservation
/// (`spent` units in `took`): what it would spend in [`CHUNK_TIME`] at that pace, at
/// least 1, at most `max`. Nothing spent: unchanged.
fn next_chunk(spent: u64, took: Duration, current: u64, max: u64) -> u64 {
    if spent == 0 {
        return current;
    }
    if took.is_zero() {
        return max;
    }
    let pace = spent as f64 * CHUNK_TIME.as_secs_f64() / took.as_secs_f64();
    (pace.round() as u64).clamp(1, max)
}

/// The adaptive controller of one run.
struct Controller {
    settings: AdaptiveThrottle,
    /// Moving average of the latency, in seconds; `None` before the first item.
    average: Option<f64>,
    /// The delay between two items, in seconds.
    delay: f64,
    /// When the next item may start.
    not_before: Instant,
}

impl Controller {
    fn new(settings: AdaptiveThrottle) -> Self {
        Controller {
            settings,
            average: None,
            delay: 0.0,
            not_before: Instant::now(),
        }
    }

    fn average(&self) -> Duration {
        Duration::from_secs_f64(self.average.unwrap_or(0.0))
    }

    /// Feeds one latency; returns the new delay between items.
    fn observe(&mut self, latency: Duration) -> Duration {
        let latency = latency.as_secs_f64();
        let average = match self.average {
            None => latency,
            Some(avg) => avg + EWMA_WEIGHT * (latency - avg),
        };
        self.average = Some(average);
        let target = self.settings.target.as_secs_f64();
        let step = (target / 10.0).max(0.001);
        if latency <= target {
            // one call within target is enough to ease off: recovering fast matters
            // more than the average's memory of the slow spell
            self.delay *= SHRINK;
            if self.delay < step {
                self.delay = 0.0;
            }
        } else if average > target {
            self.delay = (self.delay * GROW).max(step);
        }
        // otherwise a single slow call in a good spell (a spike): hold the delay
        let delay = Duration::from_secs_f64(self.delay.min(1e9));
        self.not_before = later(Instant::now(), delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_slows_down_above_target_and_recovers_below() {
        let mut c = Controller::new(AdaptiveThrottle::new(Duration::from_millis(20)));
        for _ in 0..5 {
            assert_eq!(c.observe(Duration::from_millis(5)), Duration::ZERO);
        }
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = c.observe(Duration::from_millis(60));
        }
        assert!(last > Duration::from_millis(20), "slowed down: {last:?}");
        let mut delays = Vec::new();
        for _ in 0..40 {
            delays.push(c.observe(Duration::from_millis(5)));
        }
        assert!(
            delays.windows(2).all(|w| w[1] <= w[0]),
            "delay only shrinks: {delays:?}"
        );
        assert_eq!(delays.last(), Some(&Duration::ZERO), "back to full speed");
    }

    #[test]
    fn chunks_follow_the_pace_the_run_spends_at() {
        let ms = Duration::from_millis;
        // spent 10 units in 100 ms: 10 per chunk; in 10 ms: 100, capped at 50
        assert_eq!(next_chunk(10, ms(100), 1, 50), 10);
        assert_eq!(next_chunk(10, ms(10), 1, 50), 50);
        // a slow run (1 unit a second) reserves one at a time
        assert_eq!(next_chunk(3, ms(3000), 20, 50), 1);
        // nothing spent yet (a batch bigger than what was left): unchanged
        assert_eq!(next_chunk(0, ms(500), 7, 50), 7);
        assert_eq!(next_chunk(5, Duration::ZERO, 7, 50), 50);
    }

    /// A run spending far slower than the limit holds few units ahead: after a few
    /// reservations it asks for about 100 ms of its own pace, not of the limit.
    #[tokio::test]
    async fn a_slow_run_reserves_little_ahead() {
        let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        // 1,000 a second: 100 units per chunk at most
        let mut client = RateClient::new("k", &RateLimit::per_second(1_000), &store);
        for _ in 0..12 {
            if client.available == 0 {
                client.reserve(1).await.expect("reserve");
            }
            client.spend(1);
            tokio::time::sleep(Duration::from_millis(20)).await; // 50 a second
        }
        assert!(
            (1..=10).contains(&client.chunk),
            "a run spending 50 units a second reserves about 5 at a time, not {}",
            client.chunk
        );
        assert_eq!(client.max_chunk, 100);
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(times(Duration::MAX, 3), Duration::MAX);
        assert_eq!(
            times(Duration::from_millis(4), 5),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn limits_and_chunks() {
        assert_eq!(RateLimit::per_minute(60).interval(), Duration::from_secs(1));
        assert_eq!(
            AdaptiveThrottle::new(Duration::from_millis(20)).limit(),
            Duration::from_secs(1)
        );
        assert_eq!(
            AdaptiveThrottle::new(Duration::from_millis(500)).limit(),
            Duration::from_secs(5)
        );
        assert!(RateLimit::per_second(0).validate("k").is_err());
        assert!(RateLimit::per_second(1).key("").validate("k").is_err());
        assert!(AdaptiveThrottle::new(Duration::ZERO).validate("k").is_err());
    }
}
