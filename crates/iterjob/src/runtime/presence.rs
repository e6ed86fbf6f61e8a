//! The worker's presence in the store: a beat each presence interval with the
//! slots it uses, so operators see it (the dashboard's workers list), and a
//! goodbye when it stops cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::runtime::slots::Slots;
use crate::store::{Store, WorkerPresence, now_millis};

/// Beats until `stop`, between beats (a beat cut off mid-statement could still
/// land after the worker's goodbye). A failed beat is logged and tried again at
/// the next interval: presence is for operators, never a reason to stop working.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    mut presence: WorkerPresence,
    slots: Arc<Slots>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        presence.beat_at = now_millis();
        presence.running = u32::try_from(slots.working()).unwrap_or(u32::MAX);
        if let Err(error) = store.worker_beat(&presence).await {
            tracing::debug!(%error, worker = %presence.id, "could not record the worker's beat");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}
