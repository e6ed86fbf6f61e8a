//! Enqueueing on PostgreSQL: runs of jobs without unique keys in one `INSERT …
//! SELECT FROM unnest(…)` per chunk, jobs with a unique key one at a time against
//! the partial unique index.

use std::collections::BTreeSet;

use iterjob::store::{JobId, NewJob, now_millis};
use iterjob::{Error, Result};
use iterjob_sql::release::json_text;
use sqlx::PgConnection;

use super::{INSERT_CHUNK, PgStore};

impl PgStore {
    /// Enqueues a job inside **your** transaction (or on your connection), so that
    /// the job exists if and only if your transaction commits: the write that calls
    /// for the job and the job itself are one atomic change (an outbox without
    /// the outbox). `conn` must be a connection to this store's database (`&mut
    /// *tx` for a `sqlx::Transaction` on it); the job's row, and the notification
    /// that wakes workers, become visible when you commit, and vanish if you roll
    /// back. As [`Store::job_insert`](iterjob::Store::job_insert) otherwise (unique
    /// keys included).
    ///
    /// ```no_run
    /// # async fn demo(store: iterjob_postgres::PgStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use iterjob::NewJob;
    ///
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO signups (email) VALUES ($1)")
    ///     .bind("ada@example.com")
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let id = store
    ///     .job_insert_in(&mut tx, &NewJob::new("welcome", serde_json::json!({"email": "ada@example.com"})))
    ///     .await?;
    /// tx.commit().await?; // the signup and job `id` exist from here on, together
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Store::job_insert`](iterjob::Store::job_insert); an error leaves your
    /// transaction open for you to roll back.
    pub async fn job_insert_in(&self, conn: &mut PgConnection, job: &NewJob) -> Result<JobId> {
        let ids = self
            .job_insert_many_in(conn, std::slice::from_ref(job))
            .await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("insert returned no id".into()))
    }

    /// Enqueues jobs inside your transaction; see [`PgStore::job_insert_in`].
    ///
    /// # Errors
    /// As [`PgStore::job_insert_in`].
    pub async fn job_insert_many_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let (ids, _) = self.insert_many_on(conn, jobs).await?;
        Ok(ids)
    }

    /// Inserts `jobs` on `conn` (inside a transaction) and announces the queues
    /// with jobs claimable now; returns the ids and those queues.
    pub(super) async fn insert_many_on(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<(Vec<JobId>, Vec<String>)> {
        let mut ids = Vec::with_capacity(jobs.len());
        let mut rest = jobs;
        while let Some(first) = rest.first() {
            if let Some(key) = &first.unique_key {
                ids.push(self.insert_unique(conn, first, key).await?);
                rest = &rest[1..];
                continue;
            }
            let run = rest
                .iter()
                .take(INSERT_CHUNK)
                .take_while(|job| job.unique_key.is_none())
                .count();
            ids.extend(self.insert_plain(conn, &rest[..run]).await?);
            rest = &rest[run..];
        }
        // announce the queues with jobs claimable now (scheduled ones are found by
        // polling when their time comes); a notification sent in a transaction is
        // delivered when it commits
        let now = now_millis();
        let queues: Vec<String> = jobs
            .iter()
            .filter(|job| job.run_at.is_none_or(|at| at <= now))
            .map(|job| job.queue.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.announce(conn, &queues).await?;
        Ok((ids, queues))
    }

    /// Inserts a run of jobs without unique keys; returns their ids in order.
    pub(super) async fn insert_plain(
        &self,
        tx: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let count = i32::try_from(jobs.len()).unwrap_or(i32::MAX);
        let mut ids: Vec<JobId> = sqlx::query_scalar(&self.q().insert_ids)
            .bind(count)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("drawing job ids"))?;
        ids.sort_unstable();
        let mut kinds = Vec::with_capacity(jobs.len());
        let mut queues = Vec::with_capacity(jobs.len());
        let mut priorities = Vec::with_capacity(jobs.len());
        let mut params = Vec::with_capacity(jobs.len());
        let mut cursors = Vec::with_capacity(jobs.len());
        let mut max_attempts = Vec::with_capacity(jobs.len());
        let mut run_ats = Vec::with_capacity(jobs.len());
        let mut partitions = Vec::with_capacity(jobs.len());
        let mut traces = Vec::with_capacity(jobs.len());
        for job in jobs {
            kinds.push(job.kind.as_str());
            queues.push(job.queue.as_str());
            priorities.push(job.priority);
            params.push(json_text(&job.params, "job parameters")?);
            cursors.push(
                job.cursor
                    .as_ref()
                    .map(|c| json_text(c, "job cursor"))
                    .transpose()?,
            );
            max_attempts.push(i64::from(job.max_attempts));
            run_ats.push(job.run_at);
            partitions.push(job.partitions.map(|n| i32::try_from(n).unwrap_or(i32::MAX)));
            traces.push(job.trace_context.as_deref());
        }
        sqlx::query(&self.q().insert)
            .bind(&ids)
            .bind(&kinds)
            .bind(&queues)
            .bind(&priorities)
            .bind(&params)
            .bind(&cursors)
            .bind(&max_attempts)
            .bind(&run_ats)
            .bind(&partitions)
            .bind(&traces)
            .execute(&mut *tx)
            .await
            .map_err(self.err("enqueueing jobs"))?;
        Ok(ids)
    }

    /// Inserts one job with a unique key, or finds the unfinished job holding it.
    pub(super) async fn insert_unique(
        &self,
        tx: &mut PgConnection,
        job: &NewJob,
        key: &str,
    ) -> Result<JobId> {
        let params = json_text(&job.params, "job parameters")?;
        let cursor = job
            .cursor
            .as_ref()
            .map(|c| json_text(c, "job cursor"))
            .transpose()?;
        // The holder of the key may finish between the insert and the lookup; then
        // the insert succeeds on the next round.
        for _ in 0..5 {
            let inserted: Option<JobId> = sqlx::query_scalar(&self.q().insert_unique)
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(job.priority)
                .bind(&params)
                .bind(&cursor)
                .bind(i64::from(job.max_attempts))
                .bind(key)
                .bind(job.run_at)
                .bind(job.partitions.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                .bind(&job.trace_context)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("enqueueing a job"))?;
            if let Some(id) = inserted {
                return Ok(id);
            }
            let existing: Option<JobId> = sqlx::query_scalar(&self.q().insert_existing)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("looking up a job's unique key"))?;
            if let Some(id) = existing {
                return Ok(id);
            }
        }
        Err(Error::Backend(
            format!(
                "PostgreSQL store {}: enqueueing a job with unique key `{key}` kept conflicting \
                 with jobs that finished at once; retry",
                self.inner.target
            )
            .into(),
        ))
    }
}
