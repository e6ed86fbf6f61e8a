//! Connection hygiene every store's pool gets: a connection whose transaction state
//! is unknown never goes back into the pool.
//!
//! A transaction that fails to commit or roll back (a full disk, an I/O error, a
//! server that went away mid-statement) can leave sqlx's connection believing it is
//! still inside a transaction: SQLite, for one, may roll a failed transaction back by
//! itself, after which sqlx's own `ROLLBACK` fails and its transaction depth stays
//! at 1. Returned to the pool, such a connection fails every later `begin` with
//! "attempted to call begin_with at non-zero transaction depth" — a worker that can
//! claim jobs but never finish them. [`hygienic`] closes it instead.

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};

/// `options` with a check on every release and acquire: a connection still inside a
/// transaction is first given the chance to run the `ROLLBACK` a dropped transaction
/// queued (one ping), and is closed if it is still inside one, so the pool opens a
/// fresh connection in its place. Costs nothing on a connection that is not inside
/// a transaction (the common case).
pub fn hygienic<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .after_release(|conn, _| Box::pin(async move { out_of_transaction(conn).await }))
        .before_acquire(|conn, _| Box::pin(async move { out_of_transaction(conn).await }))
}

/// True if `conn` is (or, after its queued rollback, gets) out of any transaction.
async fn out_of_transaction<C: Connection>(conn: &mut C) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() {
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!(
                "closing a pooled connection left inside a transaction (a commit or rollback \
                 failed); the pool opens a fresh one"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
