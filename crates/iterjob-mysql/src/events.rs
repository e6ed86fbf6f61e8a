//! Job history on MySQL: writing events inside the transaction of the state change
//! they record, and reading a job's events (`iterjob_job_events`).

use iterjob::store::{InterruptReason, JobEventKind, JobId, MAX_EVENTS};
use sqlx::MySqlExecutor;
use sqlx::mysql::MySqlRow;

use crate::migrate::render;

const Q_EVENT_INSERT: &str = include_str!("../queries/job_event_insert.sql");
const Q_EVENTS: &str = include_str!("../queries/job_events.sql");

/// Records `kind` for job `id`, as its row stands now in the caller's transaction.
pub(crate) async fn insert<'e>(
    executor: impl MySqlExecutor<'e>,
    id: JobId,
    kind: JobEventKind,
    reason: Option<InterruptReason>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&render(Q_EVENT_INSERT))
        .bind(kind.as_str())
        .bind(reason.map(InterruptReason::as_str))
        .bind(error)
        .bind(id)
        .execute(executor)
        .await
        .map(drop)
}

/// A job's events, newest first.
pub(crate) async fn list<'e>(
    executor: impl MySqlExecutor<'e>,
    id: JobId,
    limit: usize,
) -> Result<Vec<MySqlRow>, sqlx::Error> {
    sqlx::query(Q_EVENTS)
        .bind(id)
        .bind(i64::try_from(limit.min(MAX_EVENTS)).unwrap_or(0))
        .fetch_all(executor)
        .await
}
