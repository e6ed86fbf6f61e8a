//! Connections kept out of the pool for the worker's hot path (claims, releases,
//! heartbeats, checkpoints): a pool checkout pings the connection on the way out and
//! on the way back, so a kept connection saves two round trips per statement.

use std::sync::{Arc, PoisonError};

use iterjob::Result;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};

use super::PgStore;

/// Connections [`PgStore::hot`] keeps at most (never more than half the pool).
pub(super) const MAX_HOT: u32 = 2;

/// A connection lent by [`PgStore::hot`]: dropped, it goes back to the pool;
/// [`Hot::keep`] keeps it for the next statement of the hot path instead.
pub(super) struct Hot<'a> {
    store: &'a PgStore,
    conn: Option<PoolConnection<Postgres>>,
}

impl Hot<'_> {
    /// The connection.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        match self.conn.as_mut() {
            Some(conn) => conn,
            None => unreachable!("a lent connection is taken only by `keep`"),
        }
    }

    /// Keeps the connection for the next statement (the one just run succeeded, so
    /// it is idle and usable), unless enough are kept already.
    pub(super) fn keep(mut self) {
        let store = self.store;
        if store.pool.is_closed() {
            return;
        }
        if let Some(conn) = self.conn.take() {
            let mut hot = store
                .inner
                .hot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if hot.len() < store.inner.max_hot {
                hot.push(conn);
            }
            // the pool closed meanwhile (maybe after the watch below gave the kept
            // ones back): keep none
            if store.pool.is_closed() {
                hot.clear();
            }
        }
        let mut watch = store
            .inner
            .hot_watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if watch.is_none() {
            // A kept connection holds one of the pool's permits, and closing the pool
            // waits for every permit: give them back as soon as the pool closes.
            let closed = store.pool.close_event();
            let inner = Arc::downgrade(&store.inner);
            *watch = Some(BackgroundTask(tokio::spawn(async move {
                closed.await;
                if let Some(inner) = inner.upgrade() {
                    inner
                        .hot
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                }
            })));
        }
    }
}

/// A background task of the store (the `LISTEN` task, the watch on the pool's
/// closing); aborted when the last clone of the store goes away.
pub(super) struct BackgroundTask(pub(super) tokio::task::JoinHandle<()>);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// A connection for one statement of the worker's hot path (claims, releases,
    /// heartbeats, checkpoints): one kept from an earlier statement, else one from
    /// the pool. [`Hot::keep`] after a statement that succeeded keeps it for the next.
    ///
    /// Every pool checkout costs round trips of its own: sqlx pings a connection
    /// before handing it out and again when it comes back, so a claim or release
    /// through the pool took three round trips where one does. A kept connection
    /// skips both pings; one whose statement failed goes back to the pool, whose
    /// ping closes it if it is broken (a server restart, a killed backend).
    pub(super) async fn hot(&self, what: &'static str) -> Result<Hot<'_>> {
        let kept = self
            .inner
            .hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match kept {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(self.err(what))?,
        };
        Ok(Hot {
            store: self,
            conn: Some(conn),
        })
    }
}
