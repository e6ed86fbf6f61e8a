//! `LISTEN`/`NOTIFY` wake-ups: one connection per store listens on the schema's
//! channel and wakes waiting workers; polling covers whatever it misses.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::PgStore;
use super::hot::BackgroundTask;
use super::options::DEFAULT_ACQUIRE_TIMEOUT;
use crate::error::{Target, map_sqlx};

/// Backoff of the `LISTEN` connection after it failed: from this...
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// ...doubling up to this.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl PgStore {
    /// Starts the `LISTEN` task unless it runs (or notifications are off).
    pub(super) fn ensure_listener(&self) {
        let Some(channel) = &self.inner.channel else {
            return;
        };
        let mut slot = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|task| !task.0.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(listen(
            self.inner.listen_options.clone(),
            channel.clone(),
            Arc::clone(&self.inner.available),
            self.inner.target.clone(),
        ));
        *slot = Some(BackgroundTask(task));
    }

    pub(super) fn stop_listener(&self) {
        let task = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(task);
    }
}

/// The `LISTEN` task: holds one connection (from a pool of its own, so the store's
/// pool keeps its size) listening on `channel`, and wakes `available` on each of
/// iterjob's notifications. Reconnects after a lost connection with a backoff from
/// 250 ms to 30 s, waking the waiters each time (notifications sent meanwhile are
/// lost; the waiters look for themselves). Foreign payloads are logged at debug and
/// ignored. Runs until aborted.
async fn listen(
    options: PgConnectOptions,
    channel: String,
    available: Arc<Notify>,
    target: Target,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options.application_name("iterjob-listener"));
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        match listen_once(&pool, &channel, &available).await {
            Ok(()) => backoff = LISTEN_BACKOFF_MIN,
            Err(err) => {
                let err = map_sqlx(&target, "listening for job notifications", err);
                tracing::warn!(
                    %err,
                    retry_in = ?backoff,
                    "iterjob LISTEN connection failed; workers poll until it is back"
                );
            }
        }
        // Anything announced while we were not listening is lost: let the waiters look.
        available.notify_waiters();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// One `LISTEN` session: returns `Ok` after a lost connection that could not be
/// re-established at once, `Err` when connecting or listening failed.
async fn listen_once(
    pool: &PgPool,
    channel: &str,
    available: &Notify,
) -> std::result::Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    tracing::debug!(channel, "listening for iterjob notifications");
    available.notify_waiters();
    loop {
        match listener.try_recv().await? {
            Some(notification) => {
                if is_ours(notification.payload()) {
                    available.notify_waiters();
                } else {
                    tracing::debug!(
                        channel,
                        payload = notification.payload(),
                        "ignoring a notification that is not iterjob's"
                    );
                }
            }
            None => {
                // reconnected (eagerly) after a lost connection
                tracing::info!(
                    channel,
                    "iterjob LISTEN connection was lost and re-established"
                );
                available.notify_waiters();
            }
        }
    }
}

/// The payload of iterjob's notifications.
#[derive(Deserialize)]
struct Payload {
    iterjob: u32,
    event: String,
}

/// True for a payload iterjob sent: `{"iterjob": 1, "event": "available", …}`.
pub(super) fn is_ours(payload: &str) -> bool {
    matches!(
        serde_json::from_str::<Payload>(payload),
        Ok(p) if p.iterjob == 1 && p.event == "available"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_recognized() {
        assert!(is_ours(
            r#"{"iterjob" : 1, "event" : "available", "queue" : "default"}"#
        ));
        for foreign in [
            "",
            "hello",
            "{}",
            "[1]",
            r#"{"iterjob": 2, "event": "available"}"#,
            r#"{"iterjob": 1, "event": "other"}"#,
            r#"{"iterjob": "1", "event": "available"}"#,
        ] {
            assert!(!is_ours(foreign), "{foreign}");
        }
    }
}
