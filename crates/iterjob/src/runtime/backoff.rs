//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

/// The delay before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped
/// at `max`, then jittered to a uniformly random point in its upper half so that jobs
/// failing together do not retry together.
pub(crate) fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..50 {
                let d = retry_delay(attempt, base, max);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        assert!(retry_delay(u32::MAX, base, max) <= max);
    }
}
