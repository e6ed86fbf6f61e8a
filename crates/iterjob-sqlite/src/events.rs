//! Job history on SQLite: writing an event inside the transaction of the state change
//! it records, and reading a job's events (`iterjob_job_events`, migration 0002).

use std::str::FromStr;

use iterjob::store::{
    InterruptReason, JobEvent, JobEventKind, JobId, JobState, MAX_EVENTS, Millis,
};
use iterjob::{Error, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteExecutor};

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

/// Decodes one `iterjob_job_events` row; the error names the column.
pub(crate) fn from_row(row: &SqliteRow) -> Result<JobEvent> {
    fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T>
    where
        T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
    {
        row.try_get(name).map_err(|e| {
            Error::Corrupt(format!(
                "cannot read column `{name}` of iterjob_job_events: {e}"
            ))
        })
    }
    let id: i64 = col(row, "id")?;
    let kind: String = col(row, "event")?;
    let state: String = col(row, "state")?;
    let reason: Option<String> = col(row, "reason")?;
    let cursor: Option<String> = col(row, "cursor")?;
    let items_done: i64 = col(row, "items_done")?;
    Ok(JobEvent {
        id,
        job_id: col(row, "job_id")?,
        at: col(row, "at")?,
        kind: JobEventKind::from_str(&kind)?,
        state: JobState::from_str(&state)?,
        reason: reason.map(|r| InterruptReason::from_str(&r)).transpose()?,
        cursor: cursor
            .map(|c| {
                serde_json::from_str(&c).map_err(|e| {
                    Error::Corrupt(format!("job event {id}: cursor is not valid JSON: {e}"))
                })
            })
            .transpose()?,
        items_done: u64::try_from(items_done).unwrap_or(0),
        error: col(row, "error")?,
    })
}
