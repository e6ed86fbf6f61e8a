//! Helpers shared by the integration tests: stores and databases in temporary files.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use iterjob::Result;
use iterjob::store::{
    ClaimRequest, Claimed, Control, JobFilter, JobId, JobRecord, JobState, NewJob, Outcome,
    Progress, Rescued, RunToken, Store,
};
use iterjob_sqlite::SqliteStore;
use tempfile::TempDir;

/// A fresh temporary directory.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("iterjob-sqlite-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A path for a database file in `dir`.
pub fn db_path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A [`SqliteStore`] on a file in its own temporary directory, removed on drop.
pub struct TempStore {
    pub store: SqliteStore,
    pub dir: TempDir,
}

impl TempStore {
    /// A fresh, migrated store in a new temporary file.
    pub async fn new() -> Self {
        let dir = temp_dir();
        let path = db_path(&dir, "jobs.db");
        let store = SqliteStore::connect(path.to_str().expect("utf-8 temp path"))
            .await
            .expect("open a temporary SQLite store");
        TempStore { store, dir }
    }
}

#[async_trait::async_trait]
impl Store for TempStore {
    async fn migrate(&self) -> Result<()> {
        self.store.migrate().await
    }
    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        self.store.job_insert_many(jobs).await
    }
    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        self.store.job_claim(request).await
    }
    async fn job_heartbeat(&self, id: JobId, token: RunToken, lease: Duration) -> Result<Control> {
        self.store.job_heartbeat(id, token, lease).await
    }
    async fn job_note_failure(
        &self,
        id: JobId,
        token: RunToken,
        failure: &iterjob::Failure,
    ) -> Result<()> {
        self.store.job_note_failure(id, token, failure).await
    }
    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> Result<Control> {
        self.store.job_checkpoint(id, token, progress, lease).await
    }
    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> Result<()> {
        self.store.job_release(id, token, progress, outcome).await
    }
    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        self.store.job_rescue_expired(max_crashes).await
    }
    async fn job_get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.store.job_get(id).await
    }
    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.store.job_list(filter).await
    }
    async fn job_count_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        self.store.job_count_by_state().await
    }
    async fn worker_beat(&self, presence: &iterjob::store::WorkerPresence) -> Result<()> {
        self.store.worker_beat(presence).await
    }
    async fn worker_gone(&self, id: &str) -> Result<()> {
        self.store.worker_gone(id).await
    }
    async fn workers(&self) -> Result<Vec<iterjob::store::WorkerPresence>> {
        self.store.workers().await
    }

    async fn job_count_top_level_by_state(&self) -> Result<Vec<(JobState, u64)>> {
        self.store.job_count_top_level_by_state().await
    }
    async fn job_pause(&self, id: JobId) -> Result<JobRecord> {
        self.store.job_pause(id).await
    }
    async fn job_resume(&self, id: JobId) -> Result<JobRecord> {
        self.store.job_resume(id).await
    }
    async fn job_cancel(&self, id: JobId) -> Result<JobRecord> {
        self.store.job_cancel(id).await
    }
    async fn job_delete(&self, id: JobId) -> Result<u64> {
        self.store.job_delete(id).await
    }
    async fn job_prune(
        &self,
        state: iterjob::JobState,
        finished_before: iterjob::store::Millis,
        after: iterjob::JobId,
        limit: usize,
    ) -> Result<iterjob::store::PruneBatch> {
        self.store
            .job_prune(state, finished_before, after, limit)
            .await
    }
    async fn job_prunable(
        &self,
        state: iterjob::JobState,
        finished_before: iterjob::store::Millis,
    ) -> Result<u64> {
        self.store.job_prunable(state, finished_before).await
    }

    async fn schedule_tick(
        &self,
        tick: &iterjob::store::ScheduleTick,
    ) -> Result<iterjob::store::TickOutcome> {
        self.store.schedule_tick(tick).await
    }

    async fn schedule_states(&self) -> Result<Vec<iterjob::store::ScheduleState>> {
        self.store.schedule_states().await
    }

    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        self.store.lease_acquire(name, holder, ttl).await
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        self.store.lease_release(name, holder).await
    }

    async fn queue_pause(
        &self,
        queue: &str,
        mode: iterjob::store::QueuePauseMode,
    ) -> Result<iterjob::store::QueuePause> {
        self.store.queue_pause(queue, mode).await
    }

    async fn queue_resume(&self, queue: &str) -> Result<bool> {
        self.store.queue_resume(queue).await
    }

    async fn queue_pauses(&self) -> Result<Vec<iterjob::store::QueuePause>> {
        self.store.queue_pauses().await
    }

    async fn throttle_on(
        &self,
        switch: &iterjob::ThrottleSwitch,
    ) -> Result<iterjob::ThrottleSwitch> {
        self.store.throttle_on(switch).await
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> Result<bool> {
        self.store.throttle_off(queue, kind).await
    }

    async fn throttle_switches(
        &self,
        now: iterjob::store::Millis,
    ) -> Result<Vec<iterjob::ThrottleSwitch>> {
        self.store.throttle_switches(now).await
    }

    async fn queue_rows(
        &self,
        now: iterjob::store::Millis,
    ) -> Result<Vec<iterjob::store::QueueRow>> {
        self.store.queue_rows(now).await
    }
    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        self.store.job_retry(id).await
    }
    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[serde_json::Value],
    ) -> Result<Vec<JobId>> {
        self.store.job_partition(id, token, children).await
    }
    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&iterjob::store::Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        self.store
            .job_split(id, token, progress, split, lease)
            .await
    }
    async fn job_request_split(
        &self,
        request: &iterjob::store::SplitRequest,
    ) -> Result<Option<JobId>> {
        self.store.job_request_split(request).await
    }
    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        self.store.job_partitions(parent).await
    }
    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        self.store.rate_acquire(key, n, interval).await
    }
    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<iterjob::store::JobEvent>> {
        self.store.job_events(id, limit).await
    }
}
