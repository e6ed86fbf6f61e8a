//! Job history on SQLite: writing an event inside the transaction of the state change
//! it records, and reading a job's events (`iterjob_job_events`, migration 0002).

use iterjob::store::{InterruptReason, JobEventKind, JobId, MAX_EVENTS, Millis};
use sqlx::SqliteExecutor;
use sqlx::sqlite::SqliteRow;

const Q_EVENT_INSERT: &str = include_str!("../queries/job_event_insert.sql");
const Q_EVENTS: &str = include_str!("../queries/job_events.sql");

/// Records an event for job `id` as its row stands now in the caller's transaction.
pub(crate) async fn insert<'e>(
    executor: impl SqliteExecutor<'e>,
    id: JobId,
    now: Millis,
    kind: JobEventKind,
    reason: Option<InterruptReason>,
    error: Option<&str>,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(Q_EVENT_INSERT)
        .bind(id)
        .bind(now)
        .bind(kind.as_str())
        .bind(reason.map(InterruptReason::as_str))
        .bind(error)
        .execute(executor)
        .await
        .map(drop)
}

/// A job's events, newest first.
pub(crate) async fn list<'e>(
    executor: impl SqliteExecutor<'e>,
    id: JobId,
    limit: usize,
) -> std::result::Result<Vec<SqliteRow>, sqlx::Error> {
    sqlx::query(Q_EVENTS)
        .bind(id)
        .bind(i64::try_from(limit.min(MAX_EVENTS)).unwrap_or(0))
        .fetch_all(executor)
        .await
}
