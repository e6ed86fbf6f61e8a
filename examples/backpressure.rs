//! The default backpressure at work: a health check registered once for the app
//! (a downstream outbox's depth) holds back every kind that obeys it, an
//! operator's throttle switch holds back one kind, and a kind that opted out keeps
//! running through both. Every item is still walked exactly once.
//!
//! ```text
//! cargo run -p iterjob-examples --example backpressure
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{JobState, NewJob, now_millis};
use iterjob::{
    BoxError, Health, HealthCheck, Job, JobContext, JobError, KindSettings, Registry, Store,
    ThrottleSwitch, Worker, WorkerConfig,
};
use iterjob_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

/// A downstream outbox that fills as the backfill writes and drains on its own.
#[derive(Clone, Default)]
struct Outbox(Arc<AtomicU64>);

/// Throttles every obeying kind while the outbox holds more than 300 messages.
#[iterjob::async_trait]
impl HealthCheck for Outbox {
    fn name(&self) -> &str {
        "outbox-depth"
    }

    async fn check(&self) -> Result<Health, BoxError> {
        let depth = self.0.load(Ordering::Relaxed);
        Ok(if depth > 300 {
            Health::Throttle(format!("the outbox holds {depth} messages, above 300"))
        } else {
            Health::Healthy
        })
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Rows {
    n: i64,
}

/// A backfill whose every item puts a message in the outbox: it obeys the
/// default backpressure.
struct Backfill(Outbox);

impl Job for Backfill {
    const KIND: &'static str = "backfill";
    type Params = Rows;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &Rows,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.n, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Rows>, _row: i64) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The job that drains the outbox: it must run whatever the signals say.
struct Drain(Outbox);

impl Job for Drain {
    const KIND: &'static str = "drain";
    type Params = Rows;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &Rows,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.n, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Rows>, _tick: i64) -> Result<(), JobError> {
        // drains 250 messages a second, half what the backfill writes
        tokio::time::sleep(Duration::from_millis(40)).await;
        let _ = self
            .0
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(10))
            });
        Ok(())
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default().backpressure(false)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&dir.path().join("backpressure.db").display().to_string()).await?,
    );
    let outbox = Outbox::default();
    let mut registry = Registry::new()
        .with(Backfill(outbox.clone()))
        .with(Drain(outbox.clone()));
    registry.health_check(outbox.clone());
    let mut config = WorkerConfig::default();
    config.backpressure.backoff = Duration::from_millis(500);
    let backfill = store
        .job_insert(&NewJob::of(&Backfill(outbox.clone()), &Rows { n: 2_000 })?)
        .await?;
    let drain = store
        .job_insert(&NewJob::of(&Drain(outbox.clone()), &Rows { n: 250 })?)
        .await?;
    let worker = Arc::new(Worker::new(Arc::clone(&store), registry, config)?);
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    let mut switched = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = store.job_get(backfill).await?.expect("backfill");
        let d = store.job_get(drain).await?.expect("drain");
        let signals: Vec<String> = worker.throttles().iter().map(|s| s.why.clone()).collect();
        println!(
            "outbox {:>4} | backfill {:<9} {:>5}/2000 | drain {:<9} {:>3}/250 | {}",
            outbox.0.load(Ordering::Relaxed),
            b.state.as_str(),
            b.items_done,
            d.state.as_str(),
            d.items_done,
            if signals.is_empty() {
                "no signal".to_string()
            } else {
                signals.join("; ")
            }
        );
        // once, mid-way: an operator throttles the backfill's kind for two seconds
        if !switched && b.items_done > 1_000 {
            switched = true;
            let mut switch = ThrottleSwitch::new(None, Some("backfill".into()), now_millis());
            switch.until = Some(now_millis() + 2_000);
            switch.reason = Some("deploy in progress".into());
            store.throttle_on(&switch).await?;
            println!("operator: throttle on for kind \"backfill\" for 2 s");
        }
        if b.state == JobState::Completed && d.state == JobState::Completed {
            break;
        }
    }
    worker.shutdown_token().cancel();
    run.await??;
    let b = store.job_get(backfill).await?.expect("backfill");
    println!(
        "backfill: {} items, {} interruptions (throttled), {} attempts used",
        b.items_done, b.interruptions, b.attempts
    );
    Ok(())
}
