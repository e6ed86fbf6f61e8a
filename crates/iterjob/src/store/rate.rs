//! Rate-limit buckets: the arithmetic every store's [`Store::rate_acquire`] follows,
//! and the in-process buckets of the trait's default implementation and of
//! [`MemoryStore`](super::MemoryStore).
//!
//! The algorithm is GCRA (the generic cell rate algorithm) with reservations. A
//! bucket is one number, its *theoretical arrival time* (`tat`, microseconds on the
//! store's clock): the moment from which the next unit may be used. Reserving `n`
//! units of `interval` each is one atomic step:
//!
//! ```text
//! start = max(tat, now)
//! tat   = start + n × interval
//! wait  = start − now          (returned)
//! ```
//!
//! The caller may use its `n` units from `now + wait`, one `interval` apart. An idle
//! bucket banks nothing (`start` is never before `now`), so there is no burst after a
//! quiet spell, and reservations of many callers never overlap: together they use
//! the bucket at its rate and no faster.
//!
//! [`Store::rate_acquire`]: super::Store::rate_acquire

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch: the unit of rate-limit buckets.
pub type Micros = i64;

/// The current time in [`Micros`].
pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `n` units of `interval` each take, in whole microseconds (rounded to
/// the nearest, saturating): what a reservation moves a bucket's `tat` forward by.
/// Every store computes it with this function, so buckets agree to the microsecond.
///
/// ```
/// use std::time::Duration;
/// use iterjob::store::rate_cost_micros;
///
/// // 100 items at 3,000 per second: 33,333 µs, not 100 × 333
/// assert_eq!(rate_cost_micros(100, Duration::from_secs(1) / 3000), 33_333);
/// ```
pub fn rate_cost_micros(n: u64, interval: Duration) -> Micros {
    let nanos = u128::from(n).saturating_mul(interval.as_nanos());
    i64::try_from(nanos.saturating_add(500) / 1000).unwrap_or(i64::MAX)
}

/// How long from now a reservation that starts at `start` (µs) begins.
pub(crate) fn wait_until(start: Micros, now: Micros) -> Duration {
    Duration::from_micros(u64::try_from(start.saturating_sub(now)).unwrap_or(0))
}

/// Buckets kept in this process's memory.
#[derive(Debug, Default)]
pub(crate) struct RateBuckets {
    tat: Mutex<HashMap<String, Micros>>,
}

impl RateBuckets {
    /// The buckets of the [`Store::rate_acquire`](super::Store::rate_acquire) default
    /// implementation: one set per process, shared by every store without buckets
    /// of its own.
    pub(crate) fn process() -> &'static RateBuckets {
        static BUCKETS: OnceLock<RateBuckets> = OnceLock::new();
        BUCKETS.get_or_init(RateBuckets::default)
    }

    /// Reserves `n` units of `interval` each in bucket `key`; returns how long from
    /// now the reservation starts.
    pub(crate) fn acquire(&self, key: &str, n: u64, interval: Duration) -> Duration {
        let cost = rate_cost_micros(n, interval);
        let mut buckets = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_micros();
        let tat = buckets.entry(key.to_string()).or_insert(now);
        let start = (*tat).max(now);
        *tat = start.saturating_add(cost);
        wait_until(start, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_up_and_keys_are_independent() {
        let buckets = RateBuckets::default();
        let second = Duration::from_secs(1);
        assert!(buckets.acquire("a", 3, second) < Duration::from_millis(50));
        let wait = buckets.acquire("a", 1, second);
        assert!(
            wait > Duration::from_millis(2900) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
        assert!(buckets.acquire("b", 1, second) < Duration::from_millis(50));
    }

    #[test]
    fn cost_rounds_to_the_nearest_microsecond() {
        assert_eq!(rate_cost_micros(1, Duration::from_secs(60) / 7), 8_571_429);
        assert_eq!(rate_cost_micros(0, Duration::from_secs(1)), 0);
        assert_eq!(rate_cost_micros(u64::MAX, Duration::MAX), i64::MAX);
    }
}
