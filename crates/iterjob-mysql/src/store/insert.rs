//! Enqueueing on MySQL: runs of jobs without unique keys in one multi-row `INSERT`
//! per chunk (when the server hands such an `INSERT` consecutive ids, else a row at
//! a time), jobs with a unique key one at a time against the unique index.

use iterjob::store::{JobId, NewJob};
use iterjob::{Error, Result};
use iterjob_sql::error::is_unique_violation;
use iterjob_sql::release::json_text;
use sqlx::MySqlConnection;

use super::MySqlStore;

impl MySqlStore {
    /// Enqueues a job inside **your** transaction (or on your connection), so that
    /// the job exists if and only if your transaction commits. `conn` must be a
    /// connection to this store's database (`&mut *tx` for a transaction from
    /// [`MySqlStore::pool`]); workers see the job when you commit (they poll), and
    /// nothing of it if you roll back. As
    /// [`Store::job_insert`](iterjob::Store::job_insert) otherwise.
    ///
    /// # Errors
    /// As [`Store::job_insert`](iterjob::Store::job_insert); an error leaves your
    /// transaction open for you to roll back.
    pub async fn job_insert_in(&self, conn: &mut MySqlConnection, job: &NewJob) -> Result<JobId> {
        let ids = self
            .job_insert_many_in(conn, std::slice::from_ref(job))
            .await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| iterjob::Error::Corrupt("insert returned no id".into()))
    }

    /// Enqueues jobs inside your transaction; see [`MySqlStore::job_insert_in`].
    ///
    /// # Errors
    /// As [`MySqlStore::job_insert_in`].
    pub async fn job_insert_many_in(
        &self,
        conn: &mut MySqlConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
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
                .take(super::INSERT_CHUNK)
                .take_while(|job| job.unique_key.is_none())
                .count();
            ids.extend(self.insert_plain(conn, &rest[..run]).await?);
            rest = &rest[run..];
        }
        Ok(ids)
    }

    /// Inserts a run of jobs without unique keys; returns their ids in order.
    pub(super) async fn insert_plain(
        &self,
        tx: &mut MySqlConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let consecutive = self.consecutive_ids().await?;
        if !consecutive {
            let mut ids = Vec::with_capacity(jobs.len());
            for job in jobs {
                ids.push(self.insert_one(tx, job, None).await?);
            }
            return Ok(ids);
        }
        let rows = vec![self.q().insert_row.trim(); jobs.len()].join(", ");
        let sql = self.q().insert.replace("{rows}", &rows);
        let mut query = sqlx::query(&sql);
        for job in jobs {
            query = query
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(job.priority)
                .bind(json_text(&job.params, "job parameters")?)
                .bind(
                    job.cursor
                        .as_ref()
                        .map(|c| json_text(c, "job cursor"))
                        .transpose()?,
                )
                .bind(i64::from(job.max_attempts))
                .bind(None::<String>)
                .bind(job.run_at)
                .bind(job.partitions.map(i64::from))
                .bind(&job.trace_context);
        }
        let done = query
            .execute(&mut *tx)
            .await
            .map_err(self.err("enqueueing jobs"))?;
        let first = i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX);
        Ok((0..jobs.len() as i64).map(|i| first + i).collect())
    }

    /// Inserts one job (with its unique key, if given); returns its id.
    async fn insert_one(
        &self,
        tx: &mut MySqlConnection,
        job: &NewJob,
        key: Option<&str>,
    ) -> std::result::Result<JobId, Error> {
        self.try_insert_one(tx, job, key)
            .await
            .map_err(self.err("enqueueing a job"))
    }

    async fn try_insert_one(
        &self,
        tx: &mut MySqlConnection,
        job: &NewJob,
        key: Option<&str>,
    ) -> std::result::Result<JobId, sqlx::Error> {
        let sql = self
            .q()
            .insert
            .replace("{rows}", self.q().insert_row.trim());
        let params =
            serde_json::to_string(&job.params).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let cursor = job
            .cursor
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
        let done = sqlx::query(&sql)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(job.priority)
            .bind(params)
            .bind(cursor)
            .bind(i64::from(job.max_attempts))
            .bind(key)
            .bind(job.run_at)
            .bind(job.partitions.map(i64::from))
            .bind(&job.trace_context)
            .execute(&mut *tx)
            .await?;
        Ok(i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX))
    }

    /// Inserts one job with a unique key, or finds the unfinished job holding it.
    pub(super) async fn insert_unique(
        &self,
        tx: &mut MySqlConnection,
        job: &NewJob,
        key: &str,
    ) -> Result<JobId> {
        // The holder of the key may finish between the lookup and the insert; then
        // the insert succeeds on the next round. A failed statement leaves MySQL's
        // transaction as it was.
        for _ in 0..5 {
            let existing: Option<JobId> = sqlx::query_scalar(&self.q().insert_existing)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("looking up a job's unique key"))?;
            if let Some(id) = existing {
                return Ok(id);
            }
            match self.try_insert_one(tx, job, Some(key)).await {
                Ok(id) => return Ok(id),
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(self.err("enqueueing a job")(err)),
            }
        }
        Err(Error::Backend(
            format!(
                "MySQL store {}: enqueueing a job with unique key `{key}` kept conflicting \
                 with jobs that finished at once; retry",
                self.inner.target
            )
            .into(),
        ))
    }
}
