//! The runtime scenarios (worker and run loop) on a real SQLite file.

mod common;

use std::sync::Arc;

use iterjob::Store;

/// A fresh store in its own temporary directory, removed when the store is dropped.
async fn fresh() -> Arc<dyn Store> {
    Arc::new(common::TempStore::new().await)
}

iterjob_testkit::runtime_scenarios!(fresh());

mod pacing {
    iterjob_testkit::pacing_scenarios!(super::fresh());
}

/// A store that keeps refusing rate-limit reservations (here: its bucket table is
/// gone) does not leave the job waiting forever: after as long as a lease the run
/// ends with an error naming the rate limit and the store's error, retried as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_store_failure_ends_the_run_with_a_clear_error() {
    use std::time::Duration;

    use iterjob::{JobState, KindSettings, NewJob, RateLimit, Registry, Worker};
    use iterjob_testkit::pacing::{PacedJob, PacedParams};

    let temp = common::TempStore::new().await;
    sqlx::query("DROP TABLE iterjob_rate_limits")
        .execute(temp.store.pool())
        .await
        .expect("drop the bucket table");
    let store: Arc<dyn Store> = Arc::new(temp);
    let job = PacedJob::new(KindSettings::default().rate_limit(RateLimit::per_second(100)));
    let id = store
        .job_insert(&NewJob::of(&job, &PacedParams { n: 10, batch: 1 }).expect("params"))
        .await
        .expect("enqueue");
    let mut config = iterjob_testkit::scenarios::fast_config();
    config.lease = Duration::from_secs(1);
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        config,
    )
    .expect("config");
    let token = worker.shutdown_token();
    let run = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let r = store.job_get(id).await.expect("get").expect("job");
        if r.attempts > 0 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never gave up on the rate limit: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    token.cancel();
    run.await.expect("join").expect("worker");
    // retried at once (the test configuration's retry delay is 10 ms)
    assert!(
        matches!(record.state, JobState::Retrying | JobState::Running),
        "{record:?}"
    );
    let error = record.last_error.unwrap_or_default();
    assert!(
        error.contains("refused reservations from rate limit `paced`")
            && error.contains("iterjob_rate_limits"),
        "{error}"
    );
    assert!(job.log().is_empty(), "no item ran without the limit");
}
