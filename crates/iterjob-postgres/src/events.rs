//! Job history on PostgreSQL: writing events inside the transaction of the state
//! change they record, and reading a job's events (`job_events`, migration 0002).

use std::str::FromStr;

use iterjob::store::{InterruptReason, JobEvent, JobEventKind, JobId, JobState, MAX_EVENTS};
use iterjob::{Error, Result};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, Row};

use crate::migrate::render;

const Q_EVENT_INSERT: &str = include_str!("../queries/job_event_insert.sql");
const Q_EVENTS: &str = include_str!("../queries/job_events.sql");

/// Records `kind` for each job in `ids`, as its row stands now in the caller's
/// transaction. A rescue that failed a job records the job's new error.
pub(crate) async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    schema: &str,
    ids: &[JobId],
    kind: JobEventKind,
    reason: Option<InterruptReason>,
    error: Option<&str>,
) -> std::result::Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&render(Q_EVENT_INSERT, schema))
        .bind(ids)
        .bind(kind.as_str())
        .bind(reason.map(InterruptReason::as_str))
        .bind(error)
        .execute(executor)
        .await
        .map(drop)
}

/// A job's events, newest first.
pub(crate) async fn list<'e>(
    executor: impl PgExecutor<'e>,
    schema: &str,
    id: JobId,
    limit: usize,
) -> std::result::Result<Vec<PgRow>, sqlx::Error> {
    sqlx::query(&render(Q_EVENTS, schema))
        .bind(id)
        .bind(i64::try_from(limit.min(MAX_EVENTS)).unwrap_or(0))
        .fetch_all(executor)
        .await
}

/// Decodes one `job_events` row; the error names the column.
pub(crate) fn from_row(row: &PgRow) -> Result<JobEvent> {
    fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        row.try_get(name)
            .map_err(|e| Error::Corrupt(format!("cannot read column `{name}` of job_events: {e}")))
    }
    let kind: String = col(row, "event")?;
    let state: String = col(row, "state")?;
    let reason: Option<String> = col(row, "reason")?;
    let items_done: i64 = col(row, "items_done")?;
    Ok(JobEvent {
        id: col(row, "id")?,
        job_id: col(row, "job_id")?,
        at: col(row, "at")?,
        kind: JobEventKind::from_str(&kind)?,
        state: JobState::from_str(&state)?,
        reason: reason.map(|r| InterruptReason::from_str(&r)).transpose()?,
        cursor: col::<Option<Value>>(row, "cursor")?,
        items_done: u64::try_from(items_done).unwrap_or(0),
        error: col(row, "error")?,
    })
}
