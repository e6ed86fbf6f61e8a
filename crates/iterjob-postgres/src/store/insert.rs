//! Enqueueing on PostgreSQL: runs of jobs without unique keys in one `INSERT …
//! SELECT FROM unnest(…)` per chunk, jobs with a unique key one at a time against
//! the partial unique index.

use iterjob::store::{JobId, NewJob};
use iterjob::{Error, Result};
use iterjob_sql::release::json_text;
use sqlx::{Postgres, Transaction};

use super::PgStore;

impl PgStore {
    /// Inserts a run of jobs without unique keys; returns their ids in order.
    pub(super) async fn insert_plain(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let count = i32::try_from(jobs.len()).unwrap_or(i32::MAX);
        let mut ids: Vec<JobId> = sqlx::query_scalar(&self.q().insert_ids)
            .bind(count)
            .fetch_all(&mut **tx)
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
            .execute(&mut **tx)
            .await
            .map_err(self.err("enqueueing jobs"))?;
        Ok(ids)
    }

    /// Inserts one job with a unique key, or finds the unfinished job holding it.
    pub(super) async fn insert_unique(
        &self,
        tx: &mut Transaction<'static, Postgres>,
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
                .fetch_optional(&mut **tx)
                .await
                .map_err(self.err("enqueueing a job"))?;
            if let Some(id) = inserted {
                return Ok(id);
            }
            let existing: Option<JobId> = sqlx::query_scalar(&self.q().insert_existing)
                .bind(key)
                .fetch_optional(&mut **tx)
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
