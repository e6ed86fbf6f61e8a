//! `Store::job_release_many` for PostgreSQL: every completion of the batch in one
//! statement (`queries/job_release_many.sql`), each row fenced by its own run token.
//! Any other outcome records a history event in its release's transaction, so it goes
//! through [`Store::job_release`] (they are the rare ones: interruptions, errors).

use std::collections::HashSet;

use iterjob::store::{JobId, JobState, Release, Store, now_millis, release_event};
use iterjob::{Error, Result};
use sqlx::Row;

use iterjob_sql::release::{ReleaseChange, json_text, to_i64};

use super::PgStore;

impl PgStore {
    /// Releases `releases` in one `UPDATE … FROM unnest(…)`; a release missing from
    /// its result lost its lease (or its job), which one costs one more query.
    pub(super) async fn release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        if let [one] = releases {
            let result = self
                .job_release(one.id, one.token, one.progress.as_ref(), &one.outcome)
                .await;
            return Ok(vec![result]);
        }
        let mut results: Vec<Option<Result<()>>> = releases.iter().map(|_| None).collect();
        let n = releases.len();
        let mut sent = Vec::with_capacity(n);
        let (mut ids, mut tokens, mut with_progress, mut cursors) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut items_done, mut items_total, mut running_ms) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut states, mut run_ats, mut attempts, mut interruptions) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut errors, mut finished, mut clear) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (i, release) in releases.iter().enumerate() {
            if release_event(&release.outcome).is_some() {
                let result = self
                    .job_release(
                        release.id,
                        release.token,
                        release.progress.as_ref(),
                        &release.outcome,
                    )
                    .await;
                results[i] = Some(result);
                continue;
            }
            let progress = release.progress.as_ref();
            let cursor = match progress
                .and_then(|p| p.cursor.as_ref())
                .map(|c| json_text(c, "job cursor"))
                .transpose()
            {
                Ok(cursor) => cursor,
                Err(err) => {
                    results[i] = Some(Err(err));
                    continue;
                }
            };
            let change = ReleaseChange::of(&release.outcome);
            sent.push(i);
            ids.push(release.id);
            tokens.push(release.token.0);
            with_progress.push(progress.is_some());
            cursors.push(cursor);
            items_done.push(progress.map(|p| to_i64(p.items_done)));
            items_total.push(progress.and_then(|p| p.items_total).map(to_i64));
            running_ms.push(progress.map(|p| to_i64(p.running_ms)));
            states.push(change.state.as_str());
            run_ats.push(change.run_at);
            attempts.push(change.attempts);
            interruptions.push(change.interruptions);
            errors.push(change.error);
            finished.push(change.finished);
            clear.push(change.clear_requests);
        }
        let mut parents: Vec<JobId> = Vec::new();
        let released: HashSet<JobId> = if sent.is_empty() {
            HashSet::new()
        } else {
            let mut hot = self.hot("releasing jobs").await?;
            let rows = sqlx::query(&self.q().release_many)
                .bind(&ids)
                .bind(&tokens)
                .bind(&with_progress)
                .bind(&cursors)
                .bind(&items_done)
                .bind(&items_total)
                .bind(&running_ms)
                .bind(&states)
                .bind(&run_ats)
                .bind(&attempts)
                .bind(&interruptions)
                .bind(&errors)
                .bind(&finished)
                .bind(&clear)
                .bind(self.channel_param())
                .fetch_all(hot.conn())
                .await
                .map_err(self.err("releasing jobs"))?;
            hot.keep();
            for row in &rows {
                if let Some(parent) = row
                    .try_get::<Option<JobId>, _>("parent_id")
                    .map_err(self.err("releasing jobs"))?
                    && !parents.contains(&parent)
                {
                    parents.push(parent);
                }
            }
            rows.iter()
                .map(|row| row.try_get::<JobId, _>("id"))
                .collect::<std::result::Result<_, _>>()
                .map_err(self.err("releasing jobs"))?
        };
        // completed partitions: their parents may be done (the rescuer finishes a
        // parent this misses)
        for parent in parents {
            self.finalize_now(parent).await?;
        }
        let now = now_millis();
        let mut wake = false;
        for (k, &i) in sent.iter().enumerate() {
            let id = releases[i].id;
            results[i] = Some(if released.contains(&id) {
                wake |=
                    states[k] == JobState::Queued.as_str() && run_ats[k].is_none_or(|at| at <= now);
                Ok(())
            } else {
                Err(self.fence_failed(id).await)
            });
        }
        if wake {
            self.wake_local();
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(Error::Corrupt(
                        "a release of the batch got no result (a bug in iterjob-postgres)".into(),
                    ))
                })
            })
            .collect())
    }
}
