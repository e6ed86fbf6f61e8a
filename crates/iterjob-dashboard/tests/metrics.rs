//! `/metrics` with the Prometheus recorder installed: a worker in the same process
//! reports its runtime metrics (items, checkpoint and claim latencies, runs by
//! outcome, interruptions by reason) next to the jobs by state.
//!
//! Its own test binary: the recorder is global to the process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Count, CountParams, send};
use iterjob::{MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_dashboard::Dashboard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_metrics_appear_at_metrics() {
    let handle = iterjob_dashboard::install_prometheus().expect("install the recorder");
    assert!(
        iterjob_dashboard::install_prometheus().is_err(),
        "a second recorder is refused, with an error"
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for up_to in [250, 500] {
        store
            .job_insert(&NewJob::of(&Count, &CountParams { up_to, sleep_ms: 0 }).unwrap())
            .await
            .unwrap();
    }
    // one job paused by an operator while it runs: an interruption by reason `pause`
    let slow = store
        .job_insert(
            &NewJob::of(
                &Count,
                &CountParams {
                    up_to: 1_000,
                    sleep_ms: 5,
                },
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut config = WorkerConfig::default();
    config.checkpoint_interval = Duration::from_millis(50);
    config.heartbeat_interval = Duration::from_millis(100);
    config.poll_interval = Duration::from_millis(20);
    let worker =
        Arc::new(Worker::new(Arc::clone(&store), Registry::new().with(Count), config).unwrap());
    let run = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run_until_idle().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.job_pause(slow).await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.completed, 2);
    assert_eq!(report.paused, 1);

    let router = Dashboard::new(Arc::clone(&store))
        .prometheus(handle)
        .router();
    let reply = send(
        &router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body;
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{line_start}` in /metrics:\n{text}"))
    };
    assert_eq!(value("iterjob_jobs{state=\"completed\"}"), 2.0);
    assert_eq!(value("iterjob_jobs{state=\"paused\"}"), 1.0);
    let items = value("iterjob_items_processed_total{kind=\"count\"}");
    let paused_at = store.job_get(slow).await.unwrap().unwrap().items_done as f64;
    assert_eq!(
        items,
        750.0 + paused_at,
        "every durable item is counted once"
    );
    assert_eq!(
        value("iterjob_runs_total{kind=\"count\",outcome=\"completed\"}"),
        2.0
    );
    assert_eq!(
        value("iterjob_runs_total{kind=\"count\",outcome=\"paused\"}"),
        1.0
    );
    assert_eq!(
        value("iterjob_interruptions_total{kind=\"count\",reason=\"pause\"}"),
        1.0
    );
    assert_eq!(value("iterjob_jobs_claimed_total"), 3.0);
    assert!(value("iterjob_checkpoint_seconds_count{kind=\"count\"}") >= 1.0);
    assert!(value("iterjob_claim_seconds_count") >= 1.0);
    assert!(
        text.contains("iterjob_claim_seconds_bucket{le=\"0.001\"}"),
        "latency buckets"
    );
}
