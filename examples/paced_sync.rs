//! Pacing a job that calls a partner's API: a rate limit shared by every job of the
//! kind (100 calls a second, whatever the number of jobs, workers or processes) and
//! adaptive throttling on the API's latency (target 30 ms).
//!
//! The "partner API" is simulated in the process: it answers in about 5 ms, except
//! between seconds 4 and 8 of the run, when it is degraded and takes 60 ms per call.
//! Two jobs share the limit on one worker, on an SQLite store in a temporary file. The
//! example prints, every second, the calls made and the delay the adaptive throttle
//! puts between two calls of each job: the jobs share 100 calls a second, slow right
//! down while the API is degraded, and speed up again when it recovers.
//!
//! ```text
//! cargo run -p iterjob-examples --example paced_sync
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::{
    AdaptiveThrottle, Job, JobContext, JobError, KindSettings, NewJob, RateLimit, Registry, Store,
    Worker, WorkerConfig,
};
use iterjob_sqlite::SqliteStore;

/// The simulated partner API.
struct PartnerApi {
    started: Instant,
    calls: AtomicU64,
}

impl PartnerApi {
    /// One call: 5 ms normally, 60 ms while degraded (seconds 4 to 8).
    async fn push_product(&self, _id: i64) {
        let t = self.started.elapsed();
        let degraded = t >= Duration::from_secs(4) && t < Duration::from_secs(8);
        let latency = if degraded { 60 } else { 5 };
        tokio::time::sleep(Duration::from_millis(latency)).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pushes every product of an id range to the partner.
struct SyncToPartner {
    api: Arc<PartnerApi>,
}

impl Job for SyncToPartner {
    const KIND: &'static str = "sync_to_partner";
    type Params = (i64, i64);
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        &(first, last): &(i64, i64),
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(first..last + 1, cursor))
    }

    async fn process(&self, _ctx: &JobContext<(i64, i64)>, id: i64) -> Result<(), JobError> {
        self.api.push_product(id).await;
        Ok(())
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default()
            // the partner allows 100 calls a second per API key, over all our workers
            .rate_limit(RateLimit::per_second(100).key("partner-api"))
            // and answers in about 5 ms when healthy: back off when it struggles
            .adaptive_throttle(
                AdaptiveThrottle::new(Duration::from_millis(30))
                    .max_delay(Duration::from_secs(5))
                    .backoff(Duration::from_secs(30)),
            )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::connect(&dir.path().join("jobs.db").display().to_string()).await?;
    let store: Arc<dyn Store> = Arc::new(store);
    let api = Arc::new(PartnerApi {
        started: Instant::now(),
        calls: AtomicU64::new(0),
    });
    let kind = SyncToPartner {
        api: Arc::clone(&api),
    };
    store.job_insert(&NewJob::of(&kind, &(1, 100_000))?).await?;
    store
        .job_insert(&NewJob::of(&kind, &(100_001, 200_000))?)
        .await?;

    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        Registry::new().with(kind),
        WorkerConfig::default(),
    )?);
    let run = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run().await }
    });

    let mut last = 0;
    for second in 1..=12 {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            api.started + Duration::from_secs(second),
        ))
        .await;
        let calls = api.calls.load(Ordering::Relaxed);
        let delays: Vec<String> = worker
            .running()
            .iter()
            .map(|job| format!("job {}: {:?}", job.id, job.throttle_delay))
            .collect();
        println!(
            "t={second:>2}s  {:>3} calls/s  delay between calls: {}",
            calls - last,
            delays.join(", ")
        );
        last = calls;
    }
    worker.shutdown_token().cancel();
    run.await??;
    Ok(())
}
