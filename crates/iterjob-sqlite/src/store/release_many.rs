//! `Store::job_release_many` for SQLite: every release of the batch in one
//! `BEGIN IMMEDIATE` transaction (one fsync), each fenced by its own run token, with
//! its history event (any outcome but completion) and, for the last partition of a
//! partitioned job, the parent's end, in the same transaction.

use iterjob::store::{JobId, Release, now_millis, release_event};
use iterjob::{Error, Result};
use sqlx::Row;

use super::{Q_EXISTS, Q_RELEASE, ReleaseChange, SqliteStore, json_text, to_i64};
use crate::events;

impl SqliteStore {
    /// Releases `releases` in one transaction; a release that changes nothing is
    /// told apart (lease lost or job not found) inside the same transaction.
    pub(super) async fn release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(releases.len());
        if releases.is_empty() {
            return Ok(results);
        }
        let mut tx = self.begin("releasing jobs").await?;
        let now = now_millis();
        for release in releases {
            let progress = release.progress.as_ref();
            let cursor = match progress
                .and_then(|p| p.cursor.as_ref())
                .map(|c| json_text(c, "job cursor"))
                .transpose()
            {
                Ok(cursor) => cursor,
                Err(err) => {
                    results.push(Err(err));
                    continue;
                }
            };
            let change = ReleaseChange::of(&release.outcome);
            let done = sqlx::query(Q_RELEASE)
                .bind(release.id)
                .bind(release.token.0)
                .bind(now)
                .bind(progress.is_some())
                .bind(cursor)
                .bind(progress.map(|p| to_i64(p.items_done)))
                .bind(progress.and_then(|p| p.items_total).map(to_i64))
                .bind(progress.map(|p| to_i64(p.running_ms)))
                .bind(change.state.as_str())
                .bind(change.run_at)
                .bind(change.attempts)
                .bind(change.interruptions)
                .bind(change.error)
                .bind(change.finished)
                .bind(change.clear_requests)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("releasing jobs"))?;
            if let Some(row) = done {
                if let Some((kind, reason, error)) = release_event(&release.outcome) {
                    events::insert(&mut *tx, release.id, now, kind, reason, error)
                        .await
                        .map_err(self.err("recording a release in the job's history"))?;
                }
                let parent: Option<JobId> = row
                    .try_get("parent_id")
                    .map_err(self.err("releasing jobs"))?;
                if let Some(parent) = parent
                    && change.state.is_finished()
                {
                    self.finalize(&mut tx, parent).await?;
                }
                results.push(Ok(()));
                continue;
            }
            let exists = sqlx::query(Q_EXISTS)
                .bind(release.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("checking a job after a rejected release"))?;
            results.push(Err(match exists {
                Some(_) => Error::LeaseLost { job: release.id },
                None => Error::JobNotFound(release.id),
            }));
        }
        tx.commit().await.map_err(self.err("releasing jobs"))?;
        Ok(results)
    }
}
