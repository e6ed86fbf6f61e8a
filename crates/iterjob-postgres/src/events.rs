//! Job history on PostgreSQL: writing events inside the transaction of the state
//! change they record, and reading a job's events (`job_events`, migration 0002).

use iterjob::store::{InterruptReason, JobEventKind, JobId, MAX_EVENTS};
use sqlx::PgExecutor;
use sqlx::postgres::PgRow;

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
