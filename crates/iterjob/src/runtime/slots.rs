//! Work slots: how many of a worker's runs are working right now. A run holds its
//! slot from its start until its work is over and its release is handed to the
//! release batcher; waiting for the release to be written takes no slot, so the
//! worker starts the next job meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The worker's count of working runs, with a wake-up when one frees its slot.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    working: AtomicUsize,
    freed: Notify,
    /// Moving average of how long recent runs held their slot, in microseconds
    /// (0: none freed yet).
    mean_hold_us: AtomicU64,
}

impl Slots {
    /// Takes a slot for a run starting now.
    pub(crate) fn take(self: &Arc<Self>) -> Slot {
        self.working.fetch_add(1, Ordering::AcqRel);
        Slot {
            slots: Arc::clone(self),
            held: AtomicBool::new(true),
            taken: Instant::now(),
        }
    }

    /// Runs holding a slot.
    pub(crate) fn working(&self) -> usize {
        self.working.load(Ordering::Acquire)
    }

    /// How long recent runs held their slot, on average; `None` before any was
    /// freed.
    pub(crate) fn mean_hold(&self) -> Option<Duration> {
        match self.mean_hold_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Notes a slot held for `held`. Runs freeing slots at the same moment may each
    /// overwrite the other's update: a sample lost now and then changes nothing.
    fn held(&self, held: Duration) {
        let sample = u64::try_from(held.as_micros()).unwrap_or(u64::MAX).max(1);
        let mean = self.mean_hold_us.load(Ordering::Relaxed);
        let next = if mean == 0 {
            sample
        } else {
            // mean + (sample - mean) / 8, in integers
            (mean.saturating_mul(7).saturating_add(sample) / 8).max(1)
        };
        self.mean_hold_us.store(next, Ordering::Relaxed);
    }

    /// Resolves once a slot was freed since the last call (or now).
    pub(crate) async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// One run's slot; freed by [`Slot::free`] or when dropped (the run ended, failed
/// or was aborted).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    held: AtomicBool,
    taken: Instant,
}

impl Slot {
    /// Gives the slot back (once; later calls do nothing).
    pub(crate) fn free(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.slots.held(self.taken.elapsed());
            self.slots.working.fetch_sub(1, Ordering::AcqRel);
            self.slots.freed.notify_one();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_is_freed_once_and_wakes_the_worker() {
        let slots = Arc::new(Slots::default());
        let a = slots.take();
        let b = slots.take();
        assert_eq!(slots.working(), 2);
        a.free();
        a.free();
        assert_eq!(slots.working(), 1);
        slots.freed().await; // the permit stored by `free`
        drop(b);
        assert_eq!(slots.working(), 0);
        slots.freed().await;
        drop(a);
        assert_eq!(
            slots.working(),
            0,
            "dropping a freed slot frees nothing more"
        );
    }

    #[test]
    fn the_mean_hold_follows_recent_runs() {
        let slots = Slots::default();
        assert_eq!(slots.mean_hold(), None);
        slots.held(Duration::from_millis(8));
        assert_eq!(slots.mean_hold(), Some(Duration::from_millis(8)));
        for _ in 0..64 {
            slots.held(Duration::from_micros(100));
        }
        let mean = slots.mean_hold().unwrap();
        assert!(mean < Duration::from_micros(110), "{mean:?}");
        // a run shorter than a microsecond still counts as one
        for _ in 0..64 {
            slots.held(Duration::ZERO);
        }
        assert_eq!(slots.mean_hold(), Some(Duration::from_micros(1)));
    }
}
