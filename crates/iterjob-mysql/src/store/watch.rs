//! Wake-ups across processes without `NOTIFY`: one task per store asks the server,
//! every watch interval, for the newest job's id and how many jobs are claimable
//! (both index lookups), and wakes this process's waiting workers when either grew.

use std::sync::Arc;
use std::time::Duration;

use sqlx::MySqlPool;
use tokio::sync::Notify;

use super::MySqlStore;
use crate::migrate::render;

/// The watch task; aborted when the last clone of its store goes away.
pub(super) struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the watch reads: the newest id, and the claimable jobs (counted up to 1,000).
const Q_WATCH: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM iterjob_jobs) AS newest, \
     (SELECT COUNT(*) FROM (SELECT 1 FROM iterjob_jobs \
       WHERE claim_rank IS NOT NULL AND run_at <= {now_ms} LIMIT 1000) AS ready) AS ready";

impl MySqlStore {
    /// Starts the watch task unless it runs (or the interval is zero).
    pub(super) fn ensure_watch(&self) {
        let interval = self.inner.watch_interval;
        if interval.is_zero() {
            return;
        }
        let mut slot = self.inner.watch.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|task| !task.0.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(watch(
            self.pool.clone(),
            Arc::clone(&self.inner.available),
            interval,
        ));
        *slot = Some(Watch(task));
    }

    /// Stops the watch task.
    pub(super) fn stop_watch(&self) {
        let task = self
            .inner
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(task);
    }
}

/// Asks every `interval` and wakes `available` when a job was added or more became
/// claimable. Errors are logged at debug and retried at the next tick: the workers'
/// own polling goes on meanwhile.
async fn watch(pool: MySqlPool, available: Arc<Notify>, interval: Duration) {
    let sql = render(Q_WATCH);
    let mut last: Option<(i64, i64)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match sqlx::query_as::<_, (i64, i64)>(&sql).fetch_one(&pool).await {
            Ok((newest, ready)) => {
                if let Some((last_newest, last_ready)) = last
                    && (newest > last_newest || ready > last_ready)
                {
                    available.notify_waiters();
                }
                last = Some((newest, ready));
            }
            Err(error) => {
                tracing::debug!(%error, "iterjob's MySQL watch could not ask the server");
                last = None;
            }
        }
    }
}
