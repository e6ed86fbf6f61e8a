//! Worker presence ([`WorkerPresence`]) on every SQL store, written once: a small
//! table keyed by worker id, one row per worker process, written by each worker
//! every presence interval and read by the dashboard.
//!
//! The table (each store's migration creates it under its own name) has `id`, the
//! last beat `beat_at` (milliseconds since the epoch) and `info`, the whole
//! presence as JSON text: the dashboard reads it whole, and a new field needs no
//! migration.

use iterjob::store::{Millis, WORKER_FORGET_MS, WorkerPresence};
use sqlx::Pool;

use crate::dialect::{Dialect, RowOf};
use crate::statement::Statement;

/// [`Store::worker_beat`](iterjob::Store::worker_beat) on `table`: in one
/// transaction, forgets the workers silent for [`WORKER_FORGET_MS`] and replaces
/// this worker's row.
pub async fn worker_beat<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    presence: &WorkerPresence,
) -> Result<(), sqlx::Error> {
    let info = serde_json::to_string(presence).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut tx = pool.begin().await?;
    Statement::new(&format!("DELETE FROM {table} WHERE beat_at < "))
        .int::<D>(presence.beat_at - WORKER_FORGET_MS)
        .push(" OR id = ")
        .text::<D>(&presence.id)
        .run::<D>(&mut *tx)
        .await?;
    Statement::new(&format!("INSERT INTO {table} (id, beat_at, info) VALUES ("))
        .text::<D>(&presence.id)
        .push(", ")
        .int::<D>(presence.beat_at)
        .push(", ")
        .text::<D>(&info)
        .push(")")
        .run::<D>(&mut *tx)
        .await?;
    tx.commit().await
}

/// [`Store::worker_gone`](iterjob::Store::worker_gone) on `table`.
pub async fn worker_gone<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    Statement::new(&format!("DELETE FROM {table} WHERE id = "))
        .text::<D>(id)
        .run::<D>(&mut *conn)
        .await?;
    Ok(())
}

/// [`Store::workers`](iterjob::Store::workers) on `table`: the workers heard from
/// since `now` − [`WORKER_FORGET_MS`], by id. A row whose `info` does not parse
/// is an error naming the worker, not a worker left out.
pub async fn workers<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    now: Millis,
) -> Result<Vec<WorkerPresence>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows = Statement::new(&format!(
        "SELECT id, beat_at, info FROM {table} WHERE beat_at >= "
    ))
    .int::<D>(now - WORKER_FORGET_MS)
    .push(" ORDER BY id")
    .run::<D>(&mut *conn)
    .await?;
    rows.iter().map(decode::<D>).collect()
}

fn decode<D: Dialect>(row: &RowOf<D>) -> Result<WorkerPresence, sqlx::Error> {
    let id = D::row_text(row, "id")?.unwrap_or_default();
    let info = D::row_text(row, "info")?.unwrap_or_default();
    let mut presence: WorkerPresence =
        serde_json::from_str(&info).map_err(|e| sqlx::Error::ColumnDecode {
            index: format!("info of worker `{id}`"),
            source: Box::new(e),
        })?;
    // the column is what the beat wrote last, whatever the JSON says
    presence.beat_at = D::row_int(row, "beat_at")?.unwrap_or(presence.beat_at);
    Ok(presence)
}
