//! The [`Store`] trait on PostgreSQL: each method one statement on a kept
//! connection, or one short transaction that locks the job's row.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use iterjob::store::rules::{
    AdminAction, AdminStep, UNIQUE_KEY_HELD, delete_check, invalid, prune_check,
};
use iterjob::store::{
    ClaimRequest, Claimed, Control, Failure, JobEvent, JobEventKind, JobFilter, JobId, JobRecord,
    JobState, Millis, NewJob, Outcome, Progress, PruneBatch, QueuePause, QueuePauseMode, QueueRow,
    Release, Rescued, RunToken, ScheduleState, ScheduleTick, Split, SplitRequest, Store,
    ThrottleSwitch, TickOutcome, WorkerPresence, check_queue_name, duration_millis, merge_listing,
    now_millis, rate_cost_micros, release_event, shown_by_split_parents, split_parents_showing,
};
use iterjob::{Error, Result};
use iterjob_sql::record;
use iterjob_sql::release::{ReleaseChange, failure_text, json_text, to_i64};
use serde_json::Value;
use sqlx::Row;

use super::{DEFAULT_LIST_LIMIT, MAX_CLAIM, PgStore, claim_limit, rollback};
use crate::dialect::PgDialect;
use crate::error::{is_unique_violation, map_sqlx};
use crate::{events, migrate};

impl PgStore {
    /// A state read from the store; an unknown one is corruption, named.
    fn state(&self, s: &str) -> Result<JobState> {
        JobState::from_str(s).map_err(|_| {
            Error::Corrupt(format!(
                "PostgreSQL store {}: jobs with an unknown state `{s}`",
                self.inner.target
            ))
        })
    }
}

/// A `COUNT(*)` as read.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool, &self.inner.target).await
    }

    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin("enqueueing jobs").await?;
        let (ids, queues) = self.insert_many_on(&mut tx, jobs).await?;
        tx.commit().await.map_err(self.err("enqueueing jobs"))?;
        self.analyze_after_inserting(jobs.len() as u64).await;
        if !queues.is_empty() {
            self.wake_local();
        }
        Ok(ids)
    }

    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        if request.limit == 0 || request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: Vec<i64> = (0..request.limit.min(MAX_CLAIM))
            .map(|_| RunToken::random().0)
            .collect();
        let sql = self
            .q()
            .claim
            .replace("{claim_limit}", &claim_limit(tokens.len()).to_string());
        let mut hot = self.hot("claiming jobs").await?;
        let rows = sqlx::query(&sql)
            .bind(&request.worker_id)
            .bind(duration_millis(request.lease))
            .bind(&request.queues)
            .bind(&request.kinds)
            .bind(&tokens)
            .fetch_all(hot.conn())
            .await
            .map_err(self.err("claiming jobs"))?;
        hot.keep();
        let mut claimed = rows
            .iter()
            .map(|row| {
                let token: i64 = row
                    .try_get("run_token")
                    .map_err(|e| Error::Corrupt(format!("claimed job without a token: {e}")))?;
                Ok(Claimed {
                    job: self.record(row)?,
                    token: RunToken(token),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING gives no order; hand jobs out in claim order
        claimed.sort_by(|a, b| {
            (b.job.priority.cmp(&a.job.priority))
                .then(a.job.run_at.cmp(&b.job.run_at))
                .then(a.job.id.cmp(&b.job.id))
        });
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        let mut hot = self.hot("extending a lease").await?;
        let row = sqlx::query(&self.q().heartbeat)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .fetch_optional(hot.conn())
            .await
            .map_err(self.err("extending a lease"))?;
        hot.keep();
        match row {
            Some(row) => self.control(&row),
            None => Err(self.fence_failed(id).await),
        }
    }

    async fn job_note_failure(&self, id: JobId, token: RunToken, failure: &Failure) -> Result<()> {
        let failure = failure_text(failure)?;
        let done = sqlx::query(&self.q().note_failure)
            .bind(id)
            .bind(token.0)
            .bind(failure)
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
        let mut hot = self.hot("writing a checkpoint").await?;
        let row = sqlx::query(&self.q().checkpoint)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .fetch_optional(hot.conn())
            .await
            .map_err(self.err("writing a checkpoint"))?;
        hot.keep();
        match row {
            Some(row) => self.control(&row),
            None => Err(self.fence_failed(id).await),
        }
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
        // Completion writes no event: one statement on the pool, as it always was.
        // Any other outcome records its event in the same transaction.
        let event = release_event(outcome);
        let mut tx = match event {
            Some(_) => Some(self.begin("releasing a job").await?),
            None => None,
        };
        let release = sqlx::query(&self.q().release)
            .bind(id)
            .bind(token.0)
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
            .bind(self.channel_param());
        let row = match tx.as_mut() {
            Some(tx) => release.fetch_optional(&mut **tx).await,
            None => {
                let mut hot = self.hot("releasing a job").await?;
                let row = release.fetch_optional(hot.conn()).await;
                if row.is_ok() {
                    hot.keep();
                }
                row
            }
        }
        .map_err(self.err("releasing a job"))?;
        let Some(row) = row else {
            if let Some(tx) = tx {
                let _ = tx.rollback().await;
            }
            return Err(self.fence_failed(id).await);
        };
        let parent: Option<JobId> = row
            .try_get("parent_id")
            .map_err(self.err("releasing a job"))?;
        if let (Some(mut tx), Some((kind, reason, error))) = (tx, event) {
            events::insert(&mut *tx, self.schema(), &[id], kind, reason, error)
                .await
                .map_err(self.err("recording a release in the job's history"))?;
            tx.commit().await.map_err(self.err("releasing a job"))?;
        }
        if let Some(parent) = parent
            && change.state.is_finished()
        {
            // The release is committed (finishing the parent reads it); if this
            // fails, the rescuer finishes the parent later.
            self.finalize_now(parent).await?;
        }
        if change.state == JobState::Queued && change.run_at.is_none_or(|at| at <= now_millis()) {
            self.wake_local();
        }
        Ok(())
    }

    async fn job_release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        self.release_many(releases).await
    }

    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        let mut tx = self.begin("rescuing jobs with expired leases").await?;
        let rows = sqlx::query(&self.q().rescue)
            .bind(i64::from(max_crashes))
            .bind(self.channel_param())
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<JobId, _>("id"))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err("rescuing jobs"))?;
        events::insert(
            &mut *tx,
            self.schema(),
            &ids,
            JobEventKind::Rescued,
            None,
            None,
        )
        .await
        .map_err(self.err("recording rescues in the jobs' history"))?;
        tx.commit()
            .await
            .map_err(self.err("rescuing jobs with expired leases"))?;
        let mut rescued = rows
            .iter()
            .map(|row| {
                let id: JobId = row.try_get("id").map_err(self.err("rescuing jobs"))?;
                let state: String = row.try_get("state").map_err(self.err("rescuing jobs"))?;
                let state = JobState::from_str(&state).map_err(|_| {
                    Error::Corrupt(format!("job {id} has an unknown state `{state}`"))
                })?;
                Ok(Rescued { id, state })
            })
            .collect::<Result<Vec<_>>>()?;
        rescued.sort_by_key(|r| r.id);
        for r in &rescued {
            tracing::debug!(job = r.id, state = %r.state, "rescued a job whose lease expired");
        }
        if rescued.iter().any(|r| r.state == JobState::Queued) {
            self.wake_local();
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
        let rows = sqlx::query(&self.q().list)
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.before_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(filter.top_level)
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
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.q().count)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting jobs"))?;
        let mut counts: Vec<(JobState, u64)> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for (state, n) in rows {
            let state = JobState::from_str(&state).map_err(|_| {
                Error::Corrupt(format!(
                    "PostgreSQL store {}: jobs with an unknown state `{state}`",
                    self.inner.target
                ))
            })?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        let all = self.job_count_by_state().await?;
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(&self.q().count_split)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting top-level jobs"))?;
        let partitions = rows
            .iter()
            .map(|(parent, parent_state, s, n)| {
                Ok((
                    *parent,
                    self.state(parent_state)?,
                    self.state(s)?,
                    count(*n),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(iterjob::store::top_level_counts(all, partitions))
    }

    async fn queue_depths(&self) -> Result<Vec<(String, JobState, u64)>> {
        let what = "counting jobs by queue";
        let all: Vec<(String, String, i64)> = sqlx::query_as(&self.q().queue_depths)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(what))?;
        let parents: Vec<(String, String, i64)> = sqlx::query_as(&self.q().queue_depths_parents)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(what))?;
        let typed = |rows: Vec<(String, String, i64)>| {
            rows.into_iter()
                .map(|(q, s, n)| Ok((q, self.state(&s)?, count(n))))
                .collect::<Result<Vec<_>>>()
        };
        Ok(iterjob::store::subtract_depths(
            typed(all)?,
            typed(parents)?,
        ))
    }

    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        let (tx, record, step) = match self
            .admin_begin(id, AdminAction::Pause, "pausing a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        match step {
            AdminStep::Cascade => {
                self.cascade(
                    tx,
                    id,
                    JobState::Paused,
                    &self.q().pause_children,
                    "pausing a job",
                )
                .await
            }
            _ => {
                let _ = record;
                self.admin_update(
                    tx,
                    &self.q().pause,
                    id,
                    JobEventKind::OperatorPause,
                    self.err("pausing a job"),
                )
                .await
            }
        }
    }

    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        let (tx, _record, step) = match self
            .admin_begin(id, AdminAction::Resume, "resuming a job")
            .await?
        {
            Ok(begun) => begun,
            Err(record) => return Ok(record),
        };
        match step {
            AdminStep::Cascade => {
                self.cascade(
                    tx,
                    id,
                    JobState::Running,
                    &self.q().resume_children,
                    "resuming a job",
                )
                .await
            }
            _ => {
                self.admin_update(
                    tx,
                    &self.q().resume,
                    id,
                    JobEventKind::OperatorResume,
                    self.err("resuming a job"),
                )
                .await
            }
        }
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
        // registered before the listener starts, so no wake-up in between is missed
        let notified = self.inner.available.notified();
        self.ensure_listener();
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
        let rows = events::list(&self.pool, self.schema(), id, limit)
            .await
            .map_err(self.err("reading a job's history"))?;
        rows.iter()
            .map(|row| record::job_event::<PgDialect>(row).map_err(|message| self.corrupt(message)))
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
        let mut tx = self.begin("splitting a job into partitions").await?;
        let planned = sqlx::query(&self.q().partition)
            .bind(id)
            .bind(token.0)
            .bind(i64::try_from(children.len()).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await;
        match planned {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = tx.rollback().await;
                return Err(match self.job_get(id).await? {
                    Some(record) if record.partitions.is_none() => Error::Config(format!(
                        "job {id} was not enqueued as a partitioned job; it cannot be split into partitions"
                    )),
                    _ => self.fence_failed(id).await,
                });
            }
            Err(err) => {
                let err = map_sqlx(&self.inner.target, "splitting a job into partitions", err);
                return rollback(tx, err).await;
            }
        }
        let mut ids = Vec::with_capacity(children.len());
        let mut queues = BTreeSet::new();
        for params in &params {
            let row = match sqlx::query(&self.q().insert_partition)
                .bind(id)
                .bind(params)
                .fetch_one(&mut *tx)
                .await
            {
                Ok(row) => row,
                Err(err) => {
                    let err = map_sqlx(&self.inner.target, "enqueueing a partition", err);
                    return rollback(tx, err).await;
                }
            };
            ids.push(
                row.try_get::<JobId, _>("id")
                    .map_err(self.err("enqueueing a partition"))?,
            );
            if row
                .try_get::<String, _>("state")
                .map_err(self.err("enqueueing a partition"))?
                == "queued"
            {
                queues.insert(
                    row.try_get::<String, _>("queue")
                        .map_err(self.err("enqueueing a partition"))?,
                );
            }
        }
        let queues: Vec<String> = queues.into_iter().collect();
        self.announce(&mut tx, &queues).await?;
        tx.commit()
            .await
            .map_err(self.err("splitting a job into partitions"))?;
        if !queues.is_empty() {
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
        let give = split
            .map(|s| json_text(&s.give, "partition parameters"))
            .transpose()?;
        let mut tx = self.begin("splitting a partition").await?;
        if split.is_some() {
            // lock the parent before the partition, in the order the parent's admin
            // actions take them
            let parent: Option<Option<JobId>> = match sqlx::query_scalar(&self.q().parent_of)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
            {
                Ok(parent) => parent,
                Err(err) => {
                    return rollback(
                        tx,
                        Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                    )
                    .await;
                }
            };
            match parent {
                None => return rollback(tx, Error::JobNotFound(id)).await,
                Some(None) => {
                    return rollback(
                        tx,
                        Error::Config(format!(
                            "job {id} is not a partition of a partitioned job; only partitions can be split"
                        )),
                    )
                    .await;
                }
                Some(Some(parent)) => {
                    if let Err(err) = sqlx::query(&self.q().lock_parent)
                        .bind(parent)
                        .execute(&mut *tx)
                        .await
                    {
                        return rollback(
                            tx,
                            Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                        )
                        .await;
                    }
                }
            }
        }
        let row = match sqlx::query(&self.q().split)
            .bind(id)
            .bind(token.0)
            .bind(duration_millis(lease))
            .bind(cursor)
            .bind(to_i64(progress.items_done))
            .bind(progress.items_total.map(to_i64))
            .bind(to_i64(progress.running_ms))
            .bind(keep)
            .fetch_optional(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => {
                return rollback(
                    tx,
                    Err(map_sqlx(&self.inner.target, "splitting a partition", err)),
                )
                .await;
            }
        };
        let Some(row) = row else {
            let _ = tx.rollback().await;
            return Err(self.fence_failed(id).await);
        };
        let (Some(give), Some(parent)) = (
            give,
            row.try_get::<Option<JobId>, _>("parent_id")
                .map_err(self.err("splitting a partition"))?,
        ) else {
            tx.commit()
                .await
                .map_err(self.err("writing a checkpoint"))?;
            return Ok(None);
        };
        let inserted = match sqlx::query(&self.q().insert_partition)
            .bind(parent)
            .bind(give)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(row) => row,
            Err(err) => {
                return rollback(
                    tx,
                    Err(map_sqlx(&self.inner.target, "enqueueing a partition", err)),
                )
                .await;
            }
        };
        let new: JobId = inserted
            .try_get("id")
            .map_err(self.err("enqueueing a partition"))?;
        let claimable = inserted
            .try_get::<String, _>("state")
            .map_err(self.err("enqueueing a partition"))?
            == "queued";
        if claimable {
            let queue: String = inserted
                .try_get("queue")
                .map_err(self.err("enqueueing a partition"))?;
            self.announce(&mut tx, &[queue]).await?;
        }
        tx.commit()
            .await
            .map_err(self.err("splitting a partition"))?;
        if claimable {
            self.wake_local();
        }
        Ok(Some(new))
    }

    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        if request.kinds.is_empty() || request.queues.is_empty() {
            return Ok(None);
        }
        sqlx::query_scalar(&self.q().request_split)
            .bind(&request.queues)
            .bind(&request.kinds)
            .bind(to_i64(request.min_remaining.max(2)))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("asking a partition to split"))
    }

    async fn job_delete(&self, id: JobId) -> Result<u64> {
        const WHAT: &str = "deleting a job";
        let mut tx = self.begin(WHAT).await?;
        let deleted = async {
            // the job and its partitions locked: no claim, resume or retry between
            // the check and the delete
            let record = self.get_locked(&mut tx, id).await?;
            let rows = sqlx::query(&self.q().partitions_for_update)
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
            for query in [&q.delete_events, &q.delete_children, &q.delete] {
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
            Err(err) => rollback(tx, err).await,
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
                .bind(state.as_str())
                .bind(finished_before)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(after)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err(WHAT))?;
            if !ids.is_empty() {
                let q = self.q();
                for query in [&q.prune_events, &q.prune_children, &q.prune] {
                    sqlx::query(query)
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.err(WHAT))?;
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
            Err(err) => rollback(tx, err).await,
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
        let taken: Option<Option<i64>> = match tick.previous {
            None => sqlx::query_scalar(&self.q().schedule_insert)
                .bind(&tick.name)
                .bind(tick.tick),
            Some(previous) => sqlx::query_scalar(&self.q().schedule_advance)
                .bind(&tick.name)
                .bind(tick.tick)
                .bind(previous),
        }
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.err(what))?;
        let Some(last_job) = taken else {
            let _ = tx.rollback().await;
            return Ok(TickOutcome::Stale);
        };
        let Some(job) = &tick.job else {
            tx.commit().await.map_err(self.err(what))?;
            return Ok(TickOutcome::Recorded);
        };
        if tick.skip_if_running
            && let Some(previous) = last_job
        {
            let running: Option<i32> = sqlx::query_scalar(&self.q().job_unfinished)
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
            .bind(&tick.name)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        self.announce(&mut tx, std::slice::from_ref(&job.queue))
            .await?;
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
            .map(|row| record::schedule_state::<PgDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let row = sqlx::query(&self.q().lease_acquire)
            .bind(name)
            .bind(holder)
            .bind(duration_millis(ttl))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("taking a lease"))?;
        Ok(row.is_some())
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
        let row = sqlx::query(&self.q().queue_pause)
            .bind(queue)
            .bind(mode.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("pausing a queue"))?;
        record::queue_pause::<PgDialect>(&row).map_err(|m| self.corrupt(m))
    }

    async fn queue_resume(&self, queue: &str) -> Result<bool> {
        let mut tx = self.begin("resuming a queue").await?;
        let resumed = sqlx::query(&self.q().queue_resume)
            .bind(queue)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("resuming a queue"))?
            .is_some();
        if resumed {
            self.announce(&mut tx, &[queue.to_string()]).await?;
        }
        tx.commit().await.map_err(self.err("resuming a queue"))?;
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
            .map(|row| record::queue_pause::<PgDialect>(row).map_err(|m| self.corrupt(m)))
            .collect()
    }

    async fn throttle_on(&self, switch: &ThrottleSwitch) -> Result<ThrottleSwitch> {
        switch.validate()?;
        iterjob_sql::throttles::throttle_on::<PgDialect>(
            &self.pool,
            &format!("\"{}\".throttles", self.schema()),
            switch,
        )
        .await
        .map_err(self.err("switching a throttle on"))
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool> {
        iterjob_sql::throttles::throttle_off::<PgDialect>(
            &self.pool,
            &format!("\"{}\".throttles", self.schema()),
            queue,
            kind,
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("switching a throttle off"))
    }

    async fn worker_beat(&self, presence: &WorkerPresence) -> Result<()> {
        iterjob_sql::workers::worker_beat::<PgDialect>(
            &self.pool,
            &format!("\"{}\".workers", self.schema()),
            presence,
        )
        .await
        .map_err(self.err("recording a worker's beat"))
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        iterjob_sql::workers::worker_gone::<PgDialect>(
            &self.pool,
            &format!("\"{}\".workers", self.schema()),
            id,
        )
        .await
        .map_err(self.err("removing a worker's presence"))
    }

    async fn workers(&self) -> Result<Vec<WorkerPresence>> {
        iterjob_sql::workers::workers::<PgDialect>(
            &self.pool,
            &format!("\"{}\".workers", self.schema()),
            iterjob::store::now_millis(),
        )
        .await
        .map_err(self.err("listing the workers"))
    }

    async fn throttle_switches(&self, now: Millis) -> Result<Vec<ThrottleSwitch>> {
        iterjob_sql::throttles::throttle_switches::<PgDialect>(
            &self.pool,
            &format!("\"{}\".throttles", self.schema()),
            now,
        )
        .await
        .map_err(self.err("reading the throttle switches"))
    }

    async fn queue_rows(&self, now: Millis) -> Result<Vec<QueueRow>> {
        let rows = sqlx::query(&self.q().queue_rows)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("counting the jobs of each queue"))?;
        rows.iter()
            .map(|row| record::queue_row::<PgDialect>(row).map_err(|m| self.corrupt(m)))
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
        let wait_us: i64 = sqlx::query_scalar(&self.q().rate_acquire)
            .bind(key)
            .bind(rate_cost_micros(n, interval))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reserving from a rate limit"))?;
        Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
    }
}

impl PgStore {
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
