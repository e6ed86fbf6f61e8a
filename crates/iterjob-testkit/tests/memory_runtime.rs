//! The runtime scenarios on the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iterjob::MemoryStore;
use iterjob::Result;
use iterjob::store::{
    ClaimRequest, Claimed, Control, JobEvent, JobFilter, JobId, JobRecord, JobState, NewJob,
    Outcome, Progress, Release, Rescued, RunToken, Split, SplitRequest, Store,
};
use serde_json::Value;

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

/// A file job as a user writes it, run by a worker, stopped mid-walk, then resumed:
/// on a file replaced in between the job fails at once (fatal, one attempt) with an
/// error naming the file; on a file that only grew it completes, every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_job_stops_on_a_replaced_file_and_resumes_on_a_grown_one() {
    use iterjob::enumerator::{self, Enumerator, FileCursor, FileRange};
    use iterjob::store::{JobState, Store};
    use iterjob::{Job, JobContext, JobError, NewJob, Registry, Worker};
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct ImportLines {
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Job for ImportLines {
        const KIND: &'static str = "import_lines";
        type Params = String;
        type Cursor = FileCursor;
        type Item = String;

        fn enumerate(
            &self,
            path: &String,
            cursor: Option<FileCursor>,
        ) -> Result<impl Enumerator<String, FileCursor>, JobError> {
            Ok(enumerator::lines(path, FileRange::default(), cursor))
        }

        async fn process(&self, _: &JobContext<String>, line: String) -> Result<(), JobError> {
            // a millisecond every 20 lines, about a second for the whole file: long
            // enough to stop it midway
            let count = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(line);
                seen.len()
            };
            if count % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        }
    }

    let lines_of =
        |ids: std::ops::Range<i64>| -> String { ids.map(|i| format!("line {i}\n")).collect() };
    /// Runs a worker for `for_at_most`, or until the job leaves `queued`/`running`.
    async fn run(
        store: &Arc<MemoryStore>,
        job: &ImportLines,
        id: iterjob::JobId,
        for_at_most: Duration,
    ) {
        let worker = Worker::new(
            store.clone(),
            Registry::new().with(job.clone()),
            iterjob_testkit::scenarios::fast_config(),
        )
        .expect("config");
        let token = worker.shutdown_token();
        let handle = tokio::spawn(async move { worker.run().await });
        let deadline = tokio::time::Instant::now() + for_at_most;
        while tokio::time::Instant::now() < deadline {
            let state = store.job_get(id).await.unwrap().unwrap().state;
            if !matches!(
                state,
                JobState::Queued | JobState::Running | JobState::Retrying
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        token.cancel();
        handle.await.unwrap().unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    for (case, changed, completes) in [
        ("replaced", lines_of(-100..20_000), false),
        ("grown", lines_of(0..20_100), true),
    ] {
        let path = dir.path().join(format!("{case}.txt"));
        std::fs::write(&path, lines_of(0..20_000)).unwrap();
        let store = Arc::new(MemoryStore::new());
        let job = ImportLines::default();
        let params = path.display().to_string();
        let id = store
            .job_insert(&NewJob::of(&job, &params).unwrap())
            .await
            .unwrap();
        run(&store, &job, id, Duration::from_millis(200)).await;
        let stopped = store.job_get(id).await.unwrap().unwrap();
        assert_eq!(
            stopped.state,
            JobState::Queued,
            "{case}: interrupted by the shutdown"
        );
        assert!(
            stopped.items_done > 0 && stopped.items_done < 20_000,
            "{case}: stopped mid-walk ({} items)",
            stopped.items_done
        );
        std::fs::write(&path, &changed).unwrap();
        run(&store, &job, id, Duration::from_secs(30)).await;
        let record = store.job_get(id).await.unwrap().unwrap();
        let seen = job.seen.lock().unwrap().clone();
        if completes {
            assert_eq!(record.state, JobState::Completed, "{case}");
            let expected: Vec<String> = (0..20_100).map(|i| format!("line {i}")).collect();
            assert_eq!(seen, expected, "{case}: every line once, in order");
        } else {
            assert_eq!(record.state, JobState::Failed, "{case}");
            // the shutdown was an interruption, not an attempt; the fatal error is not
            // retried
            assert_eq!(record.attempts, 1, "{case}");
            assert_eq!(
                seen.len() as u64,
                stopped.items_done,
                "{case}: nothing walked after"
            );
            let error = record.last_error.unwrap();
            assert!(
                error.contains(&params) && error.contains("changed since the walk started"),
                "{case}: {error}"
            );
        }
    }
}

/// A fault outside the job (`JobError::Unavailable`: its database full, locked or
/// restarting) ends the run as an interruption: the job resumes from its checkpoint
/// and uses up no attempt, however many times it happens — here with one attempt
/// allowed, which a retryable error would have used up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_database_costs_no_attempt() {
    use iterjob::enumerator::{self, Enumerator};
    use iterjob::store::{InterruptReason, JobState, Store};
    use iterjob::{Job, JobContext, JobError, NewJob, Registry, Worker};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Flaky {
        seen: Arc<Mutex<Vec<i64>>>,
        outages: Arc<AtomicU32>,
    }

    impl Job for Flaky {
        const KIND: &'static str = "flaky_db";
        type Params = ();
        type Cursor = i64;
        type Item = i64;

        fn enumerate(&self, _: &(), c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..20, c))
        }

        async fn process(&self, _: &JobContext<()>, item: i64) -> Result<(), JobError> {
            if item == 7 && self.outages.fetch_add(1, Ordering::SeqCst) < 4 {
                return Err(JobError::unavailable(
                    Duration::from_millis(20),
                    "database or disk is full",
                ));
            }
            self.seen.lock().unwrap().push(item);
            Ok(())
        }
    }

    let store = Arc::new(MemoryStore::new());
    let job = Flaky::default();
    let id = store
        .job_insert(&NewJob::of(&job, &()).unwrap().max_attempts(1))
        .await
        .unwrap();
    let worker = Worker::new(
        store.clone(),
        Registry::new().with(job.clone()),
        iterjob_testkit::scenarios::fast_config(),
    )
    .expect("config");
    let token = worker.shutdown_token();
    let handle = tokio::spawn(async move { worker.run().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let record = store.job_get(id).await.unwrap().unwrap();
        if record.state != JobState::Queued && record.state != JobState::Running {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    token.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Completed, "{:?}", record.last_error);
    assert_eq!(record.attempts, 0);
    assert_eq!(record.interruptions, 4);
    assert_eq!(*job.seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    let reasons: Vec<_> = store
        .job_events(id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(reasons, vec![InterruptReason::Unavailable; 4]);
}

/// A claim in flight must finish while the worker's loop awaits another store call
/// (its rescue sweep, jobs given back). With a pool of one connection the two need
/// the same connection: a claim polled only by the loop kept it while the loop waited
/// for it, until the acquire timed out (64 worker processes with one connection each
/// stalled for minutes, their jobs' leases expiring). Here a store whose claims take
/// 15 ms and whose rescue waits for a claim in flight to end (500 ms at most, then
/// fails as a pool timeout would), with a rescue sweep every 5 ms: no sweep may
/// starve, and every job completes.
#[test]
fn a_claim_in_flight_finishes_while_the_loop_awaits_a_rescue() {
    use iterjob::enumerator::{self, Enumerator};
    use iterjob::{Job, JobContext, JobError, NewJob, Registry, Worker};

    struct OneItem;
    impl Job for OneItem {
        const KIND: &'static str = "one_item";
        type Params = u32;
        type Cursor = i64;
        type Item = i64;
        fn enumerate(
            &self,
            _: &u32,
            c: Option<i64>,
        ) -> Result<impl Enumerator<i64, i64>, JobError> {
            Ok(enumerator::range(0..1, c))
        }
        async fn process(&self, _: &JobContext<u32>, _: i64) -> Result<(), JobError> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Arc::new(ClaimGate::default());
        let jobs: Vec<NewJob> = (0..300u32)
            .map(|i| NewJob::of(&OneItem, &i).expect("params"))
            .collect();
        store.job_insert_many(&jobs).await.expect("enqueue");
        let mut config = iterjob_testkit::scenarios::fast_config();
        config.concurrency = 4;
        config.rescue_interval = Duration::from_millis(5);
        let worker =
            Worker::new(store.clone(), Registry::new().with(OneItem), config).expect("config");
        let report = tokio::time::timeout(Duration::from_secs(60), worker.run_until_idle())
            .await
            .expect("the worker finished within 60 s")
            .expect("worker");
        assert_eq!(report.completed, 300, "{report:?}");
        assert!(
            store.claims_done.load(Ordering::SeqCst) > 10,
            "claims were in flight often enough to meet a sweep"
        );
        assert_eq!(
            store.starved.load(Ordering::SeqCst),
            0,
            "a rescue sweep waited for a claim the loop was not driving"
        );
    });
}

/// A [`MemoryStore`] whose claims take a while and whose rescue needs the claim in
/// flight to end first: one connection shared by both.
#[derive(Default)]
struct ClaimGate {
    store: MemoryStore,
    claims_started: AtomicU64,
    claims_done: AtomicU64,
    claim_ended: tokio::sync::Notify,
    starved: AtomicU64,
}

impl ClaimGate {
    fn in_flight(&self) -> bool {
        self.claims_started.load(Ordering::SeqCst) > self.claims_done.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Store for ClaimGate {
    async fn migrate(&self) -> Result<()> {
        self.store.migrate().await
    }
    async fn job_insert_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        self.store.job_insert_many(jobs).await
    }
    async fn job_insert(&self, job: &NewJob) -> Result<JobId> {
        self.store.job_insert(job).await
    }
    async fn job_claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        // a claim takes a while on the wire, and gives its connection back only
        // once it has been driven to its end
        self.claims_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
        let claimed = self.store.job_claim(request).await;
        self.claims_done.fetch_add(1, Ordering::SeqCst);
        self.claim_ended.notify_waiters();
        claimed
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
    async fn job_release_many(&self, releases: &[Release]) -> Result<Vec<Result<()>>> {
        self.store.job_release_many(releases).await
    }
    async fn job_rescue_expired(&self, max_crashes: u32) -> Result<Vec<Rescued>> {
        // a pool of one connection: while a claim is in flight, the rescue waits
        // for the claim to give the connection back (or its acquire times out)
        if self.in_flight() {
            let ended = self.claim_ended.notified();
            if self.in_flight()
                && tokio::time::timeout(Duration::from_millis(500), ended)
                    .await
                    .is_err()
            {
                self.starved.fetch_add(1, Ordering::SeqCst);
                return Err(iterjob::Error::backend(
                    "pool timed out: the claim kept the connection",
                ));
            }
        }
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
    async fn job_wait_available(&self) {
        self.store.job_wait_available().await
    }
    async fn job_retry(&self, id: JobId) -> Result<JobRecord> {
        self.store.job_retry(id).await
    }
    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[Value],
    ) -> Result<Vec<JobId>> {
        self.store.job_partition(id, token, children).await
    }
    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&Split>,
        lease: Duration,
    ) -> Result<Option<JobId>> {
        self.store
            .job_split(id, token, progress, split, lease)
            .await
    }
    async fn job_request_split(&self, request: &SplitRequest) -> Result<Option<JobId>> {
        self.store.job_request_split(request).await
    }
    async fn job_partitions(&self, parent: JobId) -> Result<Vec<JobRecord>> {
        self.store.job_partitions(parent).await
    }
    async fn rate_acquire(&self, key: &str, n: u64, interval: Duration) -> Result<Duration> {
        self.store.rate_acquire(key, n, interval).await
    }
    async fn job_events(&self, id: JobId, limit: usize) -> Result<Vec<JobEvent>> {
        self.store.job_events(id, limit).await
    }
}
