//! The runtime scenarios on the in-memory store.

use std::sync::Arc;

use iterjob::MemoryStore;

iterjob_testkit::runtime_scenarios!(async {
    Arc::new(MemoryStore::new()) as Arc<dyn iterjob::Store>
});

/// A job whose enumerator and work never wait (CPU-only) must still give its thread
/// back to the scheduler, or its supervisor never runs: no checkpoints, heartbeats,
/// time slices or shutdown. Runs on a current-thread runtime on its own thread,
/// watched from this one, so a starved run fails the test instead of hanging it.
#[test]
fn cpu_only_job_still_checkpoints_and_stops_on_current_thread_runtime() {
    use iterjob::enumerator::{self, Enumerator};
    use iterjob::{Job, JobContext, JobError, NewJob, Registry, Worker};
    use std::time::Duration;

    struct Spin;
    impl Job for Spin {
        const KIND: &'static str = "spin";
        type Params = ();
        type Cursor = i64;
        type Item = i64;
        fn enumerate(&self, _: &(), c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..i64::MAX, c))
        }
        async fn process(&self, _: &JobContext<()>, i: i64) -> Result<(), JobError> {
            std::hint::black_box(i);
            Ok(())
        }
    }

    let store = Arc::new(MemoryStore::new());
    let mut config = iterjob_testkit::scenarios::fast_config();
    config.checkpoint_interval = Duration::from_millis(50);
    let worker = Worker::new(store.clone(), Registry::new().with(Spin), config).expect("config");
    let shutdown = worker.shutdown_token();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let store2 = store.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use iterjob::Store;
            store2
                .job_insert(&NewJob::new("spin", serde_json::Value::Null))
                .await
                .expect("insert");
            worker.run().await.expect("worker");
        });
        let _ = done_tx.send(());
    });
    std::thread::sleep(Duration::from_millis(500));
    shutdown.cancel();
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the worker stopped on shutdown: the CPU-only run yielded to its supervisor");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let job = rt.block_on(async {
        use iterjob::Store;
        store.job_get(1).await.expect("get").expect("job")
    });
    assert_eq!(
        job.state,
        iterjob::JobState::Queued,
        "released by the shutdown"
    );
    assert_eq!(job.interruptions, 1);
    assert!(job.items_done > 0);
    assert_eq!(job.cursor, Some(serde_json::json!(job.items_done)));
    assert!(job.checkpointed_at.is_some());
}

mod pacing {
    use std::sync::Arc;

    use iterjob::MemoryStore;

    iterjob_testkit::pacing_scenarios!(async {
        Arc::new(MemoryStore::new()) as Arc<dyn iterjob::Store>
    });
}

/// A kind whose pacing settings cannot work is refused when the worker is built,
/// with the kind and the setting named, instead of failing its jobs later.
#[test]
fn invalid_pacing_settings_are_refused_by_the_worker() {
    use std::time::Duration;

    use iterjob::{AdaptiveThrottle, Error, KindSettings, RateLimit, Registry, Worker};
    use iterjob_testkit::pacing::PacedJob;

    let cases = [
        (
            KindSettings::default().rate_limit(RateLimit::per_second(0)),
            "a rate limit of 0 items per 1s lets nothing run",
        ),
        (
            KindSettings::default().rate_limit(RateLimit::per_minute(10).key("")),
            "the rate limit's key is empty",
        ),
        (
            KindSettings::default().target_latency(Duration::ZERO),
            "a target latency of zero can never be met",
        ),
        (
            KindSettings::default().adaptive_throttle(
                AdaptiveThrottle::new(Duration::from_millis(5)).max_delay(Duration::ZERO),
            ),
            "max delay of zero",
        ),
    ];
    for (settings, expected) in cases {
        let registry = Registry::new().with(PacedJob::new(settings));
        let store = Arc::new(MemoryStore::new());
        match Worker::new(store, registry, iterjob_testkit::scenarios::fast_config()) {
            Err(Error::Config(message)) => assert!(
                message.contains("job kind `paced`") && message.contains(expected),
                "{message}"
            ),
            other => panic!("expected a configuration error about {expected:?}, got {other:?}"),
        }
    }
}
