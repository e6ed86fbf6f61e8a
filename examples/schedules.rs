//! A recurring job: a report enqueued every two seconds by a cron schedule, with two
//! workers racing for each tick (as two processes would). Each tick enqueues one
//! job; a tick whose previous report still runs is skipped.
//!
//! ```text
//! cargo run -p iterjob-examples --example schedules
//! ```

use std::sync::Arc;
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::schedule::{Overlap, Schedule};
use iterjob::store::JobFilter;
use iterjob::{Job, JobContext, JobError, Registry, Store, Worker, WorkerConfig};
use iterjob_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct ReportParams {
    /// Rows in the report.
    rows: i64,
}

/// A report over `rows` rows; the third one is slow, so the next tick finds it
/// still running and is skipped.
struct Report;

impl Job for Report {
    const KIND: &'static str = "report";
    type Params = ReportParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &ReportParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..params.rows, cursor))
    }

    async fn process(&self, ctx: &JobContext<ReportParams>, _row: i64) -> Result<(), JobError> {
        let slow = ctx.job_id == 3;
        tokio::time::sleep(Duration::from_millis(if slow { 40 } else { 2 })).await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&dir.path().join("schedules.db").display().to_string()).await?,
    );
    let schedule = Schedule::of(
        "report",
        "*/2 * * * * *",
        &Report,
        &ReportParams { rows: 100 },
    )?
    .overlap(Overlap::Skip);
    let workers: Vec<Arc<Worker>> = (0..2)
        .map(|_| {
            let registry = Registry::new().with(Report).schedule(schedule.clone());
            Worker::new(Arc::clone(&store), registry, WorkerConfig::default()).map(Arc::new)
        })
        .collect::<iterjob::Result<_>>()?;
    let runs: Vec<_> = workers
        .iter()
        .map(|w| {
            let w = Arc::clone(w);
            tokio::spawn(async move { w.run().await })
        })
        .collect();
    println!("two workers share the schedule `*/2 * * * * *` for 11 seconds…");
    tokio::time::sleep(Duration::from_secs(11)).await;
    for w in &workers {
        w.shutdown_token().cancel();
    }
    for run in runs {
        run.await??;
    }
    let mut jobs = store.job_list(&JobFilter::default()).await?;
    jobs.reverse();
    for job in &jobs {
        println!(
            "job {} {} {} ({} items)",
            job.id,
            job.unique_key.as_deref().unwrap_or("-"),
            job.state,
            job.items_done
        );
    }
    let state = &store.schedule_states().await?[0];
    println!(
        "schedule `{}`: last tick {} ms, last job {:?}; one job per tick, none twice",
        state.name, state.last_tick, state.last_job
    );
    Ok(())
}
