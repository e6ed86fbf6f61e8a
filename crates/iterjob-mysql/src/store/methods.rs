//! The [`Store`] trait on MySQL: each method one fenced statement, or one short
//! transaction that locks the rows it changes.

use std::str::FromStr;
use std::time::Duration;

use iterjob::store::rules::{
    AdminAction, AdminStep, UNIQUE_KEY_HELD, delete_check, invalid, prune_check,
};
use iterjob::store::{
    ClaimRequest, Claimed, Control, Failure, JobEvent, JobEventKind, JobFilter, JobId, JobRecord,
    JobState, Millis, NewJob, Outcome, Progress, PruneBatch, QueuePause, QueuePauseMode, QueueRow,
    Rescued, RunToken, ScheduleState, ScheduleTick, Split, SplitRequest, Store, ThrottleSwitch,
    TickOutcome, WorkerPresence, check_queue_name, duration_millis, merge_listing, now_millis,
    rate_cost_micros, release_event, shown_by_split_parents, split_parents_showing,
};
use iterjob::{Error, Result};
use iterjob_sql::record;
use iterjob_sql::release::{ReleaseChange, failure_text, json_text, lease_until, to_i64};
use serde_json::Value;
use sqlx::Row;

use super::queries::{marks, with_list};
use super::{DEFAULT_LIST_LIMIT, MAX_CLAIM, MySqlStore};
use crate::dialect::MySqlDialect;
use crate::error::{is_unique_violation, map_sqlx};
use crate::{events, migrate};

impl MySqlStore {
    /// A state read from the store; an unknown one is corruption, named.
    fn state(&self, s: &str) -> Result<JobState> {
        JobState::from_str(s).map_err(|_| self.corrupt(format!("jobs with an unknown state `{s}`")))
    }
}

/// A `COUNT(*)` as read.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for MySqlStore {
    async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool, &self.inner.target).await
    }

    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin("enqueueing jobs").await?;
        let ids = self.job_insert_many_in(&mut tx, jobs).await?;
        tx.commit().await.map_err(self.err("enqueueing jobs"))?;
        let now = now_millis();
        if jobs.iter().any(|job| job.run_at.is_none_or(|at| at <= now)) {
            self.wake_local();
        }
        Ok(ids)
    }

    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if request.limit == 0 || request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let limit = request.limit.min(MAX_CLAIM);
        let mut tx = self.begin("claiming jobs").await?;
        // the queues asked for, less the paused ones (read first, locking nothing)
        let paused = sqlx::query(&self.q().queue_pauses)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("claiming jobs"))?
            .iter()
            .map(|row| {
                record::queue_pause::<MySqlDialect>(row)
                    .map(|p| p.queue)
                    .map_err(|m| self.corrupt(m))
            })
            .collect::<Result<Vec<String>>>()?;
        let queues: Vec<&String> = request
            .queues
            .iter()
            .filter(|q| !paused.contains(q))
            .collect();
        if queues.is_empty() {
            let _ = tx.rollback().await;
            return Ok(Vec::new());
        }
        let pick = with_list(
            &with_list(&self.q().claim_pick, "queues", queues.len()),
            "kinds",
            request.kinds.len(),
        );
        let mut query = sqlx::query(&pick);
        for queue in queues {
            query = query.bind(queue);
        }
        for kind in &request.kinds {
            query = query.bind(kind);
        }
        let picked = query
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("claiming jobs"))?;
        if picked.is_empty() {
            let _ = tx.rollback().await;
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(picked.len());
        let mut now = 0;
        for row in &picked {
            ids.push(
                row.try_get::<i64, _>("id")
                    .map_err(self.err("claiming jobs"))?,
            );
            now = row
                .try_get::<i64, _>("now_ms")
                .map_err(self.err("claiming jobs"))?;
        }
        let tokens: Vec<i64> = ids.iter().map(|_| RunToken::random().0).collect();
        let take = self
            .q()
            .claim_take
            .replace("{tokens}", &vec!["WHEN ? THEN ?"; ids.len()].join(" "))
            .replace("{ids}", &marks(ids.len()));
        let mut query = sqlx::query(&take);
        for (id, token) in ids.iter().zip(&tokens) {
            query = query.bind(id).bind(token);
        }
        query = query
            .bind(&request.worker_id)
            .bind(lease_until(now, request.lease))
            .bind(now);
        for id in &ids {
            query = query.bind(id);
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(self.err("claiming jobs"))?;
        let get = with_list(&self.q().get_many, "ids", ids.len());
        let mut query = sqlx::query(&get);
        for id in &ids {
            query = query.bind(id);
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("claiming jobs"))?;
        tx.commit().await.map_err(self.err("claiming jobs"))?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let job = self.record(row)?;
                let token = ids
                    .iter()
                    .position(|id| *id == job.id)
                    .map(|i| RunToken(tokens[i]))
                    .ok_or_else(|| Error::Corrupt(format!("claimed job {} not picked", job.id)))?;
                Ok(Claimed { job, token })
            })
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by(|a, b| {
            (b.job.priority.cmp(&a.job.priority))
                .then(a.job.run_at.cmp(&b.job.run_at))
                .then(a.job.id.cmp(&b.job.id))
        });
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        let done = sqlx::query(&self.q().heartbeat)
            .bind(duration_millis(lease))
            .bind(id)
            .bind(token.0)
            .execute(&self.pool)
            .await
            .map_err(self.err("extending a lease"))?;
        if done.rows_affected() == 0 {
            return Err(self.fence_failed(id).await);
        }
        self.pending_requests(id, token).await
    }

    async fn job_note_failure(&self, id: JobId, token: RunToken, failure: &Failure) -> Result<()> {
        let failure = failure_text(failure)?;
        let done = sqlx::query(&self.q().note_failure)
            .bind(failure)
            .bind(id)
            .bind(token.0)
            .execute(&self.pool)
            .await
            .map_err(self.err("recording where a run failed"))?;
        if done.rows_affected() == 0 {
            return Err(self.fence_failed(id).await);
        }
        Ok(())
    }

    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control> {
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let done = sqlx::query(&self.q().checkpoint)
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .bind(duration_millis(lease))
            .bind(id)
            .bind(token.0)
            .execute(&self.pool)
            .await
            .map_err(self.err("writing a checkpoint"))?;
        if done.rows_affected() == 0 {
            return Err(self.fence_failed(id).await);
        }
        self.pending_requests(id, token).await
    }

    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()> {
        let cursor = progress
            .and_then(|p| p.cursor.as_ref())
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let change = ReleaseChange::of(outcome);
        let with = progress.is_some();
        let event = release_event(outcome);
        // with a history event, the release and its event commit together; without
        // one (a completion), the release is one autocommitted statement
        let mut tx = match event {
            Some(_) => Some(self.begin("releasing a job").await?),
            None => None,
        };
        let release = sqlx::query(&self.q().release)
            .bind(with)
            .bind(cursor)
            .bind(with)
            .bind(progress.map(|p| to_i64(p.items_done)))
            .bind(with)
            .bind(progress.map(|p| to_i64(p.items_done)))
            .bind(with)
            .bind(progress.and_then(|p| p.items_total).map(to_i64))
            .bind(with)
            .bind(progress.map(|p| to_i64(p.running_ms)))
            .bind(with)
            .bind(change.state.as_str())
            .bind(change.run_at)
            .bind(change.attempts)
            .bind(change.interruptions)
            .bind(change.error)
            .bind(change.finished)
            .bind(change.clear_requests)
            .bind(change.clear_requests)
            .bind(id)
            .bind(token.0);
        let done = match tx.as_mut() {
            Some(tx) => release.execute(&mut **tx).await,
            None => release.execute(self.pool()).await,
        }
        .map_err(self.err("releasing a job"))?;
        if done.rows_affected() == 0 {
            if let Some(tx) = tx {
                let _ = tx.rollback().await;
            }
            return Err(self.fence_failed(id).await);
        }
        // the statement handed back the job's parent (0: none)
        let parent = i64::try_from(done.last_insert_id())
            .ok()
            .filter(|&parent| parent > 0);
        if let (Some(mut tx), Some((kind, reason, error))) = (tx, event) {
            events::insert(&mut *tx, id, kind, reason, error)
                .await
                .map_err(self.err("recording a release in the job's history"))?;
            tx.commit().await.map_err(self.err("releasing a job"))?;
        }
        if change.state == JobState::Queued {
            self.wake_local();
        }
        if let Some(parent) = parent
            && change.state.is_finished()
        {
            // The release is durable already; if this fails, the rescuer finishes
            // the parent later.
            self.finalize_now(parent).await?;
        }
        Ok(())
    }

    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        let mut tx = self.begin("rescuing jobs with expired leases").await?;
        let ids: Vec<JobId> = sqlx::query_scalar(&self.q().rescue_pick)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let mut rescued = Vec::with_capacity(ids.len());
        if ids.is_empty() {
            let _ = tx.rollback().await;
        } else {
            let rescue = with_list(&self.q().rescue, "ids", ids.len());
            let mut query = sqlx::query(&rescue);
            for _ in 0..6 {
                query = query.bind(i64::from(max_crashes));
            }
            for id in &ids {
                query = query.bind(id);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(self.err("rescuing jobs with expired leases"))?;
            let read = with_list(&self.q().rescued, "ids", ids.len());
            let mut query = sqlx::query(&read);
            for id in &ids {
                query = query.bind(id);
            }
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err("rescuing jobs with expired leases"))?;
            for row in &rows {
                let id: JobId = row.try_get("id").map_err(self.err("rescuing jobs"))?;
                let state = <MySqlDialect as iterjob_sql::Dialect>::row_text(row, "state")
                    .map_err(self.err("rescuing jobs"))?
                    .unwrap_or_default();
                let error = <MySqlDialect as iterjob_sql::Dialect>::row_text(row, "last_error")
                    .map_err(self.err("rescuing jobs"))?;
                let state = JobState::from_str(&state).map_err(|_| {
                    Error::Corrupt(format!("job {id} has an unknown state `{state}`"))
                })?;
                let error = error.filter(|_| state == JobState::Failed);
                events::insert(&mut *tx, id, JobEventKind::Rescued, None, error.as_deref())
                    .await
                    .map_err(self.err("recording a rescue in the job's history"))?;
                rescued.push(Rescued { id, state });
            }
            tx.commit()
                .await
                .map_err(self.err("rescuing jobs with expired leases"))?;
            for r in &rescued {
                tracing::debug!(job = r.id, state = %r.state, "rescued a job whose lease expired");
            }
            if rescued.iter().any(|r| r.state == JobState::Queued) {
                self.wake_local();
            }
        }
        let parents: Vec<JobId> = sqlx::query_scalar(&self.q().finalize_candidates)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("looking for finished partitioned jobs"))?;
        for parent in parents {
            self.finalize_now(parent).await?;
        }
        Ok(rescued)
    }

    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&self.q().get)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading a job"))?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(self.with_progress(self.record(&row)?).await?)),
        }
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let state = filter.state.map(JobState::as_str);
        let rows = sqlx::query(&self.q().list)
            .bind(state)
            .bind(state)
            .bind(filter.kind.as_deref())
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.before_id)
            .bind(filter.top_level)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing jobs"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = self.with_progress(self.record(row)?).await?;
            // a split parent's shown state follows its partitions: one stored as
            // `running` whose partitions all wait is not a running job
            if filter.state.is_none_or(|s| s == record.state) {
                records.push(record);
            }
        }
        if let Some(state) = filter.state.filter(|s| shown_by_split_parents(*s)) {
            // split parents stored `running` that show the state listed
            let parents = split_parents_showing(state, filter.before_id, limit, |before| {
                self.split_parents_page(filter, before, limit)
            })
            .await?;
            records = merge_listing(records, parents, limit);
        }
        Ok(records)
    }

    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let rows = sqlx::query(&self.q().count)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting jobs"))?;
        let mut counts: Vec<(JobState, u64)> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in &rows {
            let state = <MySqlDialect as iterjob_sql::Dialect>::row_text(row, "state")
                .map_err(self.err("counting jobs"))?
                .unwrap_or_default();
            let n = <MySqlDialect as iterjob_sql::Dialect>::row_int(row, "n")
                .map_err(self.err("counting jobs"))?
                .unwrap_or(0);
            let state = JobState::from_str(&state)
                .map_err(|_| self.corrupt(format!("jobs with an unknown state `{state}`")))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        type D = MySqlDialect;
        let what = "counting top-level jobs";
        let all = self.job_count_by_state().await?;
        let rows = sqlx::query(&self.q().count_split)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(what))?;
        let text = |row: &sqlx::mysql::MySqlRow, column: &str| -> Result<String> {
            Ok(<D as iterjob_sql::Dialect>::row_text(row, column)
                .map_err(self.err(what))?
                .unwrap_or_default())
        };
        let int = |row: &sqlx::mysql::MySqlRow, column: &str| -> Result<i64> {
            Ok(<D as iterjob_sql::Dialect>::row_int(row, column)
                .map_err(self.err(what))?
                .unwrap_or(0))
        };
        let partitions = rows
            .iter()
            .map(|row| {
                Ok((
                    int(row, "parent_id")?,
                    self.state(&text(row, "parent_state")?)?,
                    self.state(&text(row, "state")?)?,
                    count(int(row, "n")?),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(iterjob::store::top_level_counts(all, partitions))
    }

    async fn queue_depths(&self) -> Result<Vec<(String, JobState, u64)>> {
        type D = MySqlDialect;
        let what = "counting jobs by queue";
        let read = |sql: String| async move {
            let rows = sqlx::query(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(self.err(what))?;
            rows.iter()
                .map(|row| {
                    let text = |column: &str| -> Result<String> {
                        Ok(<D as iterjob_sql::Dialect>::row_text(row, column)
                            .map_err(self.err(what))?
                            .unwrap_or_default())
                    };
                    let n = <D as iterjob_sql::Dialect>::row_int(row, "n")
                        .map_err(self.err(what))?
                        .unwrap_or(0);
                    Ok((text("queue")?, self.state(&text("state")?)?, count(n)))
                })
                .collect::<Result<Vec<_>>>()
        };
        let all = read(self.q().queue_depths.clone()).await?;
        let parents = read(self.q().queue_depths_parents.clone()).await?;
        Ok(iterjob::store::subtract_depths(all, parents))
    }

    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        let (tx, _record, step) = match self
            .admin_begin(id, AdminAction::Pause, "pausing a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        if step == AdminStep::Cascade {
            return self
                .cascade(
                    tx,
                    id,
                    JobState::Paused,
                    &self.q().pause_children,
                    "pausing a job",
                )
                .await;
        }
        self.admin_update(
            tx,
            &self.q().pause,
            id,
            JobEventKind::OperatorPause,
            self.err("pausing a job"),
        )
        .await
    }

    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        let (tx, _record, step) = match self
            .admin_begin(id, AdminAction::Resume, "resuming a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        if step == AdminStep::Cascade {
            return self
                .cascade(
                    tx,
                    id,
                    JobState::Running,
                    &self.q().resume_children,
                    "resuming a job",
                )
                .await;
        }
        self.admin_update(
            tx,
            &self.q().resume,
            id,
            JobEventKind::OperatorResume,
            self.err("resuming a job"),
        )
        .await
    }

    async fn job_cancel(&self, id: JobId) -> Result<JobRecord> {
        let (tx, record, step) = match self
            .admin_begin(id, AdminAction::Cancel, "cancelling a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        if step == AdminStep::Cascade {
            return self
                .cascade(
                    tx,
                    id,
                    JobState::Cancelled,
                    &self.q().cancel_children,
                    "cancelling a job",
                )
                .await;
        }
        let finishes_partition = record
            .parent_id
            .filter(|_| record.state != JobState::Running);
        let cancelled = self
            .admin_update(
                tx,
                &self.q().cancel,
                id,
                JobEventKind::OperatorCancel,
                self.err("cancelling a job"),
            )
            .await?;
        if let Some(parent) = finishes_partition {
            // a waiting partition finished now: its parent may be done
            self.finalize_now(parent).await?;
        }
        Ok(cancelled)
    }

    async fn job_wait_available(&self) {
        // registered before the watch starts, so no wake-up in between is missed
        let notified = self.inner.available.notified();
        self.ensure_watch();
        notified.await;
    }

    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        let (tx, record, step) = match self
            .admin_begin(id, AdminAction::Retry, "retrying a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        if step == AdminStep::Cascade {
            let retried = self
                .cascade(
                    tx,
                    id,
                    JobState::Running,
                    &self.q().retry_children,
                    "retrying a job",
                )
                .await?;
            // every partition may have completed already (a parent cancelled late)
            self.finalize_now(id).await?;
            return Ok(self.job_get(id).await?.unwrap_or(retried));
        }
        let on_error = |err: sqlx::Error| {
            if is_unique_violation(&err) {
                invalid(&record, "retry", UNIQUE_KEY_HELD)
            } else {
                map_sqlx(&self.inner.target, "retrying a job", err)
            }
        };
        self.admin_update(
            tx,
            &self.q().retry,
            id,
            JobEventKind::OperatorRetry,
            on_error,
        )
        .await
    }

    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        let rows = events::list(&self.pool, id, limit)
            .await
            .map_err(self.err("reading a job's history"))?;
        rows.iter()
            .map(|row| {
                record::job_event::<MySqlDialect>(row).map_err(|message| self.corrupt(message))
            })
            .collect()
    }

    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>> {
        let params = children
            .iter()
            .map(|p| json_text(p, "partition parameters"))
            .collect::<Result<Vec<_>>>()?;
        let count = i64::try_from(children.len()).unwrap_or(i64::MAX);
        let mut tx = self.begin("splitting a job into partitions").await?;
        let planned = sqlx::query(&self.q().partition)
            .bind(count)
            .bind(count)
            .bind(id)
            .bind(token.0)
            .execute(&mut *tx)
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        if planned.rows_affected() == 0 {
            let _ = tx.rollback().await;
            return Err(match self.job_get(id).await? {
                Some(record) if record.partitions.is_none() => Error::Config(format!(
                    "job {id} was not enqueued as a partitioned job; it cannot be split into partitions"
                )),
                _ => self.fence_failed(id).await,
            });
        }
        let mut ids = Vec::with_capacity(params.len());
        for params in params {
            let done = sqlx::query(&self.q().insert_partition)
                .bind(params)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err("enqueueing a partition"))?;
            ids.push(i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX));
        }
        tx.commit()
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        if !ids.is_empty() {
            self.wake_local();
        }
        Ok(ids)
    }

    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        let cursor = progress
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        let keep = split
            .map(|s| json_text(&s.keep, "partition parameters"))
            .transpose()?;
        let mut tx = self.begin("splitting a partition").await?;
        let done = sqlx::query(&self.q().split)
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(to_i64(progress.items_done))
            .bind(keep.as_deref())
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .bind(duration_millis(lease))
            .bind(keep.as_deref())
            .bind(id)
            .bind(token.0)
            .execute(&mut *tx)
            .await
            .map_err(self.err("splitting a partition"))?;
        if done.rows_affected() == 0 {
            let _ = tx.rollback().await;
            return Err(self.fence_failed(id).await);
        }
        let Some(split) = split else {
            tx.commit()
                .await
                .map_err(self.err("writing a checkpoint"))?;
            return Ok(None);
        };
        let parent: Option<JobId> = sqlx::query_scalar(&self.q().parent_of)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("splitting a partition"))?;
        let Some(parent) = parent else {
            let _ = tx.rollback().await;
            return Err(Error::Config(format!(
                "job {id} is not a partition of a partitioned job; only partitions can be split"
            )));
        };
        let done = sqlx::query(&self.q().insert_partition)
            .bind(json_text(&split.give, "partition parameters")?)
            .bind(parent)
            .execute(&mut *tx)
            .await
            .map_err(self.err("enqueueing a partition"))?;
        tx.commit()
            .await
            .map_err(self.err("splitting a partition"))?;
        self.wake_local();
        Ok(Some(
            i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX),
        ))
    }

    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        if request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(None);
        }
        let pick = with_list(
            &with_list(&self.q().request_split, "queues", request.queues.len()),
            "kinds",
            request.kinds.len(),
        );
        let mut tx = self.begin("asking a partition to split").await?;
        let mut query =
            sqlx::query_scalar::<_, JobId>(&pick).bind(to_i64(request.min_remaining.max(2)));
        for queue in &request.queues {
            query = query.bind(queue);
        }
        for kind in &request.kinds {
            query = query.bind(kind);
        }
        let picked = query
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("asking a partition to split"))?;
        let Some(id) = picked else {
            let _ = tx.rollback().await;
            return Ok(None);
        };
        sqlx::query(&self.q().mark_split)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err("asking a partition to split"))?;
        tx.commit()
            .await
            .map_err(self.err("asking a partition to split"))?;
        Ok(Some(id))
    }

    async fn job_delete(&self, id: JobId) -> Result<u64> {
        const WHAT: &str = "deleting a job";
        let mut tx = self.begin(WHAT).await?;
        let deleted = async {
            // the job and its partitions locked: no claim, resume or retry between
            // the check and the delete
            let record = self.get_locked(&mut tx, id).await?;
            let partitions = format!("{} FOR UPDATE", self.q().partitions.trim_end());
            let rows = sqlx::query(&partitions)
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
            let children = rows
                .iter()
                .map(|row| self.record(row))
                .collect::<Result<Vec<_>>>()?;
            delete_check(&record, &children)?;
            let q = self.q();
            sqlx::query(&q.delete_events)
                .bind(id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
            for query in [&q.delete_children, &q.delete] {
                sqlx::query(query)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err(WHAT))?;
            }
            Ok::<u64, Error>(1 + children.len() as u64)
        }
        .await;
        match deleted {
            Ok(n) => {
                tx.commit().await.map_err(self.err(WHAT))?;
                Ok(n)
            }
            Err(err) => {
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }

    async fn job_prune(
        &self,
        state: JobState,
        finished_before: iterjob::store::Millis,
        after: JobId,
        limit: usize,
    ) -> Result<PruneBatch> {
        const WHAT: &str = "pruning finished jobs";
        prune_check(state)?;
        let mut tx = self.begin(WHAT).await?;
        let pruned = async {
            let ids: Vec<i64> = sqlx::query_scalar(&self.q().prune_pick)
                .bind(after)
                .bind(state.as_str())
                .bind(finished_before)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
            if !ids.is_empty() {
                let q = self.q();
                let events = with_list(&q.prune_events, "ids", ids.len());
                let mut query = sqlx::query(&events);
                for id in ids.iter().chain(&ids) {
                    query = query.bind(id);
                }
                query.execute(&mut *tx).await.map_err(self.err(WHAT))?;
                for sql in [&q.prune_children, &q.prune] {
                    let sql = with_list(sql, "ids", ids.len());
                    let mut query = sqlx::query(&sql);
                    for id in &ids {
                        query = query.bind(id);
                    }
                    query.execute(&mut *tx).await.map_err(self.err(WHAT))?;
                }
            }
            Ok::<PruneBatch, Error>(PruneBatch {
                deleted: ids.len() as u64,
                last_id: ids.iter().max().copied(),
            })
        }
        .await;
        match pruned {
            Ok(n) => {
                tx.commit().await.map_err(self.err(WHAT))?;
                Ok(n)
            }
            Err(err) => {
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }

    async fn job_prunable(
        &self,
        state: JobState,
        finished_before: iterjob::store::Millis,
    ) -> Result<u64> {
        prune_check(state)?;
        let n: i64 = sqlx::query_scalar(&self.q().prunable)
            .bind(state.as_str())
            .bind(finished_before)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("counting prunable jobs"))?;
        Ok(n.max(0) as u64)
    }

    async fn schedule_tick(&self, tick: &ScheduleTick) -> Result<TickOutcome> {
        let what = "taking a schedule's tick";
        let mut tx = self.begin(what).await?;
        let taken = match tick.previous {
            None => sqlx::query(&self.q().schedule_insert)
                .bind(&tick.name)
                .bind(tick.tick),
            Some(previous) => sqlx::query(&self.q().schedule_advance)
                .bind(tick.tick)
                .bind(&tick.name)
                .bind(previous),
        }
        .execute(&mut *tx)
        .await
        .map_err(self.err(what))?
        .rows_affected()
            > 0;
        if !taken {
            let _ = tx.rollback().await;
            return Ok(TickOutcome::Stale);
        }
        let Some(job) = &tick.job else {
            tx.commit().await.map_err(self.err(what))?;
            return Ok(TickOutcome::Recorded);
        };
        let row = sqlx::query(&self.q().schedule_get)
            .bind(&tick.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err(what))?;
        let state = record::schedule_state::<MySqlDialect>(&row).map_err(|m| self.corrupt(m))?;
        if tick.skip_if_running
            && let Some(previous) = state.last_job
        {
            let running = sqlx::query(&self.q().job_unfinished)
                .bind(previous)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err(what))?;
            if running.is_some() {
                tx.commit().await.map_err(self.err(what))?;
                return Ok(TickOutcome::SkippedRunning(previous));
            }
        }
        let id = match &job.unique_key {
            Some(key) => self.insert_unique(&mut tx, job, key).await?,
            None => {
                self.insert_plain(&mut tx, std::slice::from_ref(job))
                    .await?[0]
            }
        };
        sqlx::query(&self.q().schedule_set_job)
            .bind(id)
            .bind(&tick.name)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(what))?;
        self.wake_local();
        Ok(TickOutcome::Enqueued(id))
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows = sqlx::query(&self.q().schedule_states)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading the schedules"))?;
        rows.iter()
            .map(|row| record::schedule_state::<MySqlDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut tx = self.begin("taking a lease").await?;
        sqlx::query(&self.q().lease_acquire)
            .bind(name)
            .bind(holder)
            .bind(duration_millis(ttl))
            .execute(&mut *tx)
            .await
            .map_err(self.err("taking a lease"))?;
        let row = sqlx::query(&self.q().lease_holder)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("taking a lease"))?;
        tx.commit().await.map_err(self.err("taking a lease"))?;
        let now: Option<String> =
            <MySqlDialect as iterjob_sql::dialect::Dialect>::row_text(&row, "holder")
                .map_err(self.err("taking a lease"))?;
        Ok(now.as_deref() == Some(holder))
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(&self.q().lease_release)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(self.err("giving up a lease"))?;
        Ok(())
    }

    async fn queue_pause(&self, queue: &str, mode: QueuePauseMode) -> Result<QueuePause> {
        check_queue_name(queue)?;
        let mut tx = self.begin("pausing a queue").await?;
        sqlx::query(&self.q().queue_pause)
            .bind(queue)
            .bind(mode.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err("pausing a queue"))?;
        let row = sqlx::query(&self.q().queue_paused)
            .bind(queue)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err("pausing a queue"))?;
        tx.commit().await.map_err(self.err("pausing a queue"))?;
        record::queue_pause::<MySqlDialect>(&row).map_err(|m| self.corrupt(m))
    }

    async fn queue_resume(&self, queue: &str) -> Result<bool> {
        let done = sqlx::query(&self.q().queue_resume)
            .bind(queue)
            .execute(&self.pool)
            .await
            .map_err(self.err("resuming a queue"))?;
        let resumed = done.rows_affected() > 0;
        if resumed {
            self.wake_local();
        }
        Ok(resumed)
    }

    async fn queue_pauses(&self) -> Result<Vec<QueuePause>> {
        let rows = sqlx::query(&self.q().queue_pauses)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading paused queues"))?;
        rows.iter()
            .map(|row| record::queue_pause::<MySqlDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn throttle_on(&self, switch: &ThrottleSwitch) -> Result<ThrottleSwitch> {
        switch.validate()?;
        iterjob_sql::throttles::throttle_on::<MySqlDialect>(&self.pool, "iterjob_throttles", switch)
            .await
            .map_err(self.err("switching a throttle on"))
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool> {
        iterjob_sql::throttles::throttle_off::<MySqlDialect>(
            &self.pool,
            "iterjob_throttles",
            queue,
            kind,
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("switching a throttle off"))
    }

    async fn worker_beat(&self, presence: &WorkerPresence) -> Result<()> {
        iterjob_sql::workers::worker_beat::<MySqlDialect>(&self.pool, "iterjob_workers", presence)
            .await
            .map_err(self.err("recording a worker's beat"))
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        iterjob_sql::workers::worker_gone::<MySqlDialect>(&self.pool, "iterjob_workers", id)
            .await
            .map_err(self.err("removing a worker's presence"))
    }

    async fn workers(&self) -> Result<Vec<WorkerPresence>> {
        iterjob_sql::workers::workers::<MySqlDialect>(
            &self.pool,
            "iterjob_workers",
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("listing the workers"))
    }

    async fn throttle_switches(&self, now: Millis) -> Result<Vec<ThrottleSwitch>> {
        iterjob_sql::throttles::throttle_switches::<MySqlDialect>(
            &self.pool,
            "iterjob_throttles",
            now,
        )
        .await
        .map_err(self.err("reading the throttle switches"))
    }

    async fn queue_rows(&self, now: Millis) -> Result<Vec<QueueRow>> {
        let rows = sqlx::query(&self.q().queue_rows)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting the jobs of each queue"))?;
        rows.iter()
            .map(|row| record::queue_row::<MySqlDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&self.q().partitions)
            .bind(parent)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing a job's partitions"))?;
        rows.iter().map(|row| self.record(row)).collect()
    }

    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        let cost = rate_cost_micros(n, interval);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        sqlx::query(&self.q().rate_acquire)
            .bind(key)
            .bind(cost)
            .bind(cost)
            .execute(&mut *conn)
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        // LAST_INSERT_ID is per connection: read on the one that wrote it
        let wait_us: u64 = sqlx::query_scalar("SELECT LAST_INSERT_ID()")
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        Ok(Duration::from_micros(wait_us))
    }
}

impl MySqlStore {
    /// The operator's requests for a run that just wrote under its token.
    async fn pending_requests(&self, id: JobId, token: RunToken) -> Result<Control> {
        let row = sqlx::query(&self.q().control)
            .bind(id)
            .bind(token.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading a job's requests"))?;
        match row {
            Some(row) => self.control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }
}

impl MySqlStore {
    /// A page of split parents (stored `running`), newest first, below `before`,
    /// with their progress and shown state: for [`split_parents_showing`].
    async fn split_parents_page(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&self.q().list_split_parents)
            .bind(filter.kind.as_deref())
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.queue.as_deref())
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("listing jobs"))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(self.with_progress(self.record(row)?).await?);
        }
        Ok(records)
    }
}
