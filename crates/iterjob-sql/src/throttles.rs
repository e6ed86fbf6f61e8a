//! The operators' throttle switches ([`ThrottleSwitch`]) on every SQL store, written
//! once: a small table keyed by scope, read by every worker each control interval.
//!
//! The table (each store's migration creates it under its own name) has one row per
//! scope: `queue` and `kind`, `''` standing for "every queue" and "every kind" (so
//! the pair can be the primary key on every database: no NULL in a key), `since`
//! and `until` in milliseconds since the epoch (`until` NULL while on until switched
//! off), and the operator's `reason`.

use iterjob::ThrottleSwitch;
use iterjob::store::Millis;
use sqlx::Pool;

use crate::dialect::{Dialect, RowOf};
use crate::statement::Statement;

fn decode<D: Dialect>(row: &RowOf<D>) -> Result<ThrottleSwitch, sqlx::Error> {
    let text = |column: &str| -> Result<Option<String>, sqlx::Error> {
        Ok(D::row_text(row, column)?.filter(|s| !s.is_empty()))
    };
    Ok(ThrottleSwitch {
        queue: text("queue")?,
        kind: text("kind")?,
        since: D::row_int(row, "since")?.unwrap_or(0),
        until: D::row_int(row, "until_at")?,
        reason: text("reason")?,
    })
}

/// `WHERE queue = ? AND kind = ?` for one scope (`''` standing for "every").
fn where_scope<D: Dialect>(
    statement: Statement,
    queue: Option<&str>,
    kind: Option<&str>,
) -> Statement {
    statement
        .push(" WHERE queue = ")
        .text::<D>(queue.unwrap_or(""))
        .push(" AND kind = ")
        .text::<D>(kind.unwrap_or(""))
}

/// Deletes the switches whose time is up at `now`.
fn expire<D: Dialect>(table: &str, now: Millis) -> Statement {
    Statement::new(&format!(
        "DELETE FROM {table} WHERE until_at IS NOT NULL AND until_at <= "
    ))
    .int::<D>(now)
}

/// [`Store::throttle_on`](iterjob::Store::throttle_on) on `table`: in one
/// transaction, deletes the switches whose time is up, keeps the `since` of the one
/// already on for this scope, and writes the switch.
pub async fn throttle_on<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    switch: &ThrottleSwitch,
) -> Result<ThrottleSwitch, sqlx::Error> {
    let (queue, kind) = (switch.queue.as_deref(), switch.kind.as_deref());
    let mut tx = pool.begin().await?;
    expire::<D>(table, switch.since).run::<D>(&mut *tx).await?;
    let find = Statement::new(&format!(
        "SELECT queue, kind, since, until_at, reason FROM {table}"
    ));
    let existing = where_scope::<D>(find, queue, kind)
        .run::<D>(&mut *tx)
        .await?;
    let since = match existing.first() {
        Some(row) => decode::<D>(row)?.since,
        None => switch.since,
    };
    let delete = Statement::new(&format!("DELETE FROM {table}"));
    where_scope::<D>(delete, queue, kind)
        .run::<D>(&mut *tx)
        .await?;
    let mut insert = Statement::new(&format!(
        "INSERT INTO {table} (queue, kind, since, until_at, reason) VALUES ("
    ))
    .text::<D>(queue.unwrap_or(""))
    .push(", ")
    .text::<D>(kind.unwrap_or(""))
    .push(", ")
    .int::<D>(since)
    .push(", ");
    insert = match switch.until {
        Some(until) => insert.int::<D>(until),
        None => insert.push("NULL"),
    };
    insert = insert.push(", ");
    insert = match &switch.reason {
        Some(reason) => insert.text::<D>(reason),
        None => insert.push("NULL"),
    };
    insert.push(")").run::<D>(&mut *tx).await?;
    tx.commit().await?;
    Ok(ThrottleSwitch {
        since,
        ..switch.clone()
    })
}

/// [`Store::throttle_off`](iterjob::Store::throttle_off) on `table`: deletes the
/// switches whose time is up at `now` and the one on exactly this scope; true when
/// that one was on.
pub async fn throttle_off<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    queue: Option<&str>,
    kind: Option<&str>,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    expire::<D>(table, now).run::<D>(&mut *tx).await?;
    let find = Statement::new(&format!("SELECT queue FROM {table}"));
    let was_on = !where_scope::<D>(find, queue, kind)
        .run::<D>(&mut *tx)
        .await?
        .is_empty();
    if was_on {
        let delete = Statement::new(&format!("DELETE FROM {table}"));
        where_scope::<D>(delete, queue, kind)
            .run::<D>(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(was_on)
}

/// [`Store::throttle_switches`](iterjob::Store::throttle_switches) on `table`: the
/// switches on at `now`, by queue then kind (`''`, "every", first). One indexed read
/// of a table of a few rows, made by every worker each control interval.
pub async fn throttle_switches<D: Dialect>(
    pool: &Pool<D::Database>,
    table: &str,
    now: Millis,
) -> Result<Vec<ThrottleSwitch>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let rows = Statement::new(&format!(
        "SELECT queue, kind, since, until_at, reason FROM {table} \
         WHERE until_at IS NULL OR until_at > "
    ))
    .int::<D>(now)
    .push(" ORDER BY queue, kind")
    .run::<D>(&mut *conn)
    .await?;
    rows.iter().map(decode::<D>).collect()
}
