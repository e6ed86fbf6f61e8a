//! Worker presence: each worker process says it is alive every presence interval
//! ([`Store::worker_beat`](super::Store::worker_beat)), so operators can see which
//! workers serve which queues, how many slots they use, and which went silent.

use serde::{Deserialize, Serialize};

use super::Millis;

/// How long a silent worker's row is kept (a worker killed without a clean stop
/// leaves one): a day, so that the dashboard can still say when it was last heard.
pub const WORKER_FORGET_MS: Millis = 24 * 3_600_000;

/// A worker process as it last reported itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerPresence {
    /// [`WorkerConfig::worker_id`](crate::WorkerConfig::worker_id).
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// The job kinds it runs.
    pub kinds: Vec<String>,
    /// Its slots: jobs it may run at once.
    pub concurrency: u32,
    /// Slots in use at its last beat.
    pub running: u32,
    /// When it started (milliseconds since the epoch).
    pub started_at: Millis,
    /// Its last beat.
    pub beat_at: Millis,
    /// How often it beats; a worker silent for three of these is likely gone.
    pub beat_every_ms: u64,
    /// The iterjob version it runs.
    pub version: String,
}

impl WorkerPresence {
    /// A presence of `id` on this host and process, started and beating `now`.
    pub fn new(id: impl Into<String>, now: Millis) -> Self {
        WorkerPresence {
            id: id.into(),
            host: host_name(),
            pid: std::process::id(),
            queues: Vec::new(),
            kinds: Vec::new(),
            concurrency: 0,
            running: 0,
            started_at: now,
            beat_at: now,
            beat_every_ms: 0,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// True when it has not beaten for three of its intervals at `now` (killed,
    /// stopped with SIGSTOP, or cut off from the store).
    pub fn is_silent(&self, now: Millis) -> bool {
        let every = i64::try_from(self.beat_every_ms.max(1_000)).unwrap_or(i64::MAX);
        now.saturating_sub(self.beat_at) > every.saturating_mul(3)
    }
}

/// This machine's host name (`HOSTNAME`, else `/etc/hostname`, else `localhost`).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}
