//! Work slots: how many of a worker's runs are working right now. A run holds its
//! slot from its start until its work is over and its release is handed to the
//! release batcher; waiting for the release to be written takes no slot, so the
//! worker starts the next job meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The worker's count of working runs, with a wake-up when one frees its slot.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    working: AtomicUsize,
    freed: Notify,
}

impl Slots {
    /// Takes a slot for a run starting now.
    pub(crate) fn take(self: &Arc<Self>) -> Slot {
        self.working.fetch_add(1, Ordering::AcqRel);
        Slot {
            slots: Arc::clone(self),
            held: AtomicBool::new(true),
        }
    }

    /// Runs holding a slot.
    pub(crate) fn working(&self) -> usize {
        self.working.load(Ordering::Acquire)
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
}

impl Slot {
    /// Gives the slot back (once; later calls do nothing).
    pub(crate) fn free(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
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
}
