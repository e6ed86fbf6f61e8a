//! What operators set in the store and every worker obeys: paused queues. Each
//! worker reads them every [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval)
//! and hands them to its runs through a watch channel, so one small query per worker
//! (not per run) keeps every run within about a second of an operator's switch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{QueuePauseMode, Store};

/// The operators' switches as last read from the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Controls {
    /// Paused queues and what the pause does to their running jobs.
    paused: HashMap<String, QueuePauseMode>,
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
}

/// The receiving end runs hold.
pub(crate) type ControlsWatch = watch::Receiver<Arc<Controls>>;

/// A channel with no switch set, for runs outside a worker's loop.
pub(crate) fn channel() -> (watch::Sender<Arc<Controls>>, ControlsWatch) {
    watch::channel(Arc::new(Controls::default()))
}

/// Reads the switches every `interval` until the receivers are gone. A store that
/// fails to answer leaves the last switches in force (logged once per failure streak).
pub(crate) async fn poll(
    store: Arc<dyn Store>,
    interval: Duration,
    sender: watch::Sender<Arc<Controls>>,
) {
    let mut failing = false;
    loop {
        match store.queue_pauses().await {
            Ok(pauses) => {
                if failing {
                    tracing::info!("reading paused queues works again");
                    failing = false;
                }
                let controls = Controls {
                    paused: pauses.into_iter().map(|p| (p.queue, p.mode)).collect(),
                };
                sender.send_if_modified(|current| {
                    if **current == controls {
                        false
                    } else {
                        *current = Arc::new(controls);
                        true
                    }
                });
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "reading paused queues failed; keeping the last known");
                    failing = true;
                }
            }
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}
