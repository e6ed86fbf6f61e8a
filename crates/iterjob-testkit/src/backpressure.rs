//! The default backpressure on every store: operator throttle switches kept by
//! scope (conformance), and a worker obeying a switch and a health check while a
//! kind that opted out keeps running (runtime scenarios). Every item is walked
//! exactly once through the interruptions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{InterruptReason, JobId, JobState, NewJob, Store, now_millis};
use iterjob::{
    BoxError, Error, Health, HealthCheck, Job, JobContext, JobError, KindSettings, Registry,
    ThrottleSwitch, Worker, WorkerConfig,
};

use crate::scenarios::{CountingJob, CountingParams, Recorder, fast_config};

/// Switches are kept per scope: switching one on again keeps its `since` and takes
/// the new end and reason; expired ones are not listed; off is per exact scope;
/// bad names are refused.
pub async fn throttle_switches_are_kept_by_scope(store: Arc<dyn Store>) {
    let now = now_millis();
    assert!(store.throttle_switches(now).await.expect("read").is_empty());
    let all = store
        .throttle_on(&ThrottleSwitch::new(None, None, now - 5_000))
        .await
        .expect("on");
    assert_eq!((all.queue.as_deref(), all.kind.as_deref()), (None, None));
    let mut bulk = ThrottleSwitch::new(Some("bulk".into()), Some("export".into()), now);
    bulk.until = Some(now + 60_000);
    bulk.reason = Some("replica rebuild".into());
    store.throttle_on(&bulk).await.expect("on");
    // again, later, with a new end: the first `since` stays
    let mut again = ThrottleSwitch::new(Some("bulk".into()), Some("export".into()), now + 1_000);
    again.until = Some(now + 120_000);
    let stored = store.throttle_on(&again).await.expect("on again");
    assert_eq!(stored.since, now, "since kept");
    assert_eq!(stored.until, Some(now + 120_000));
    assert_eq!(
        stored.reason, None,
        "the new reason (none) replaces the old"
    );
    let mut gone = ThrottleSwitch::new(Some("old".into()), None, now - 10_000);
    gone.until = Some(now - 1);
    store
        .throttle_on(&gone)
        .await
        .expect("an already ended switch is stored");

    let on = store.throttle_switches(now).await.expect("read");
    assert_eq!(on.len(), 2, "{on:?}");
    assert_eq!(on[0], all, "every queue first");
    assert_eq!(on[1], stored);
    assert!(on[1].covers("bulk", "export", now));
    assert!(!on[1].covers("bulk", "other", now));
    assert!(on[0].covers("any", "thing", now));
    // past its end it is not listed
    assert_eq!(
        store
            .throttle_switches(now + 200_000)
            .await
            .expect("read")
            .len(),
        1
    );

    assert!(
        !store.throttle_off(Some("bulk"), None).await.expect("off"),
        "no such scope"
    );
    assert!(
        store
            .throttle_off(Some("bulk"), Some("export"))
            .await
            .expect("off")
    );
    assert!(
        !store.throttle_off(Some("old"), None).await.expect("off"),
        "had ended"
    );
    assert!(store.throttle_off(None, None).await.expect("off"));
    assert!(store.throttle_switches(now).await.expect("read").is_empty());

    for bad in [
        ThrottleSwitch::new(Some(String::new()), None, now),
        ThrottleSwitch::new(None, Some("bad\nkind".into()), now),
        ThrottleSwitch {
            until: Some(now),
            ..ThrottleSwitch::new(None, None, now)
        },
    ] {
        assert!(
            matches!(store.throttle_on(&bad).await, Err(Error::Config(_))),
            "refused: {bad:?}"
        );
    }
}

/// A [`CountingJob`] whose kind opted out of the default backpressure.
#[derive(Clone, Debug, Default)]
pub struct ExemptJob {
    /// Where processed items go.
    pub recorder: Recorder,
}

impl Job for ExemptJob {
    const KIND: &'static str = "exempt";
    type Params = CountingParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &CountingParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..params.n, cursor))
    }

    async fn process(&self, ctx: &JobContext<CountingParams>, item: i64) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(ctx.params.sleep_ms)).await;
        self.recorder.record(ctx.job_id, item);
        Ok(())
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default().backpressure(false)
    }
}

/// A health check an outside hand turns: 0 healthy, 1 throttling, 2 failing.
#[derive(Clone, Debug, Default)]
pub struct Lever(pub Arc<AtomicU8>);

#[iterjob::async_trait]
impl HealthCheck for Lever {
    fn name(&self) -> &str {
        "lever"
    }

    async fn check(&self) -> Result<Health, BoxError> {
        match self.0.load(Ordering::SeqCst) {
            0 => Ok(Health::Healthy),
            1 => Ok(Health::Throttle("the lever is down".into())),
            _ => Err("the lever's service is unreachable".into()),
        }
    }
}

fn backpressure_config() -> WorkerConfig {
    let mut config = fast_config();
    config.control_interval = Duration::from_millis(50);
    config.backpressure.backoff = Duration::from_millis(200);
    config.concurrency = 4;
    config
}

async fn insert<J: Job<Params = CountingParams>>(
    store: &Arc<dyn Store>,
    job: &J,
    n: i64,
    sleep_ms: u64,
) -> JobId {
    let params = CountingParams {
        n,
        sleep_ms,
        ..Default::default()
    };
    store
        .job_insert(&NewJob::of(job, &params).expect("params"))
        .await
        .expect("enqueue")
}

async fn wait_for(
    store: &Arc<dyn Store>,
    id: JobId,
    what: &str,
    mut ok: impl FnMut(&iterjob::JobRecord) -> bool,
) -> iterjob::JobRecord {
    for _ in 0..1500 {
        let r = store.job_get(id).await.expect("get").expect("job");
        if ok(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = store.job_get(id).await.expect("get").expect("job");
    panic!("job {id}: {what} never happened: {r:?}");
}

/// What a throttle signal does, the same whatever raises it: `engage` and
/// `release` turn it on and off. The obeying job goes back to its queue (an
/// interruption, no attempt used, the signal named as why) and stays there; the
/// exempt job keeps running to completion; once released the obeying job
/// finishes, every item exactly once.
async fn obeyed<E, R>(store: Arc<dyn Store>, registry_extra: Option<Lever>, engage: E, release: R)
where
    E: AsyncFnOnce(JobId),
    R: AsyncFnOnce(JobId),
{
    let job = CountingJob::new();
    let exempt = ExemptJob::default();
    let obeying = insert(&store, &job, 3_000, 1).await;
    let running_through = insert(&store, &exempt, 600, 3).await;
    let mut registry = Registry::new().with(job.clone()).with(exempt.clone());
    if let Some(lever) = registry_extra {
        registry.health_check(lever);
    }
    let worker =
        Arc::new(Worker::new(Arc::clone(&store), registry, backpressure_config()).expect("config"));
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    wait_for(&store, obeying, "started", |r| r.items_done > 0).await;
    engage(obeying).await;
    let back = wait_for(&store, obeying, "sent back throttled", |r| {
        r.state == JobState::Queued && r.interruptions > 0
    })
    .await;
    assert!(back.items_done < 3_000, "{}", back.items_done);
    assert_eq!(back.attempts, 0, "no attempt used");
    let why = back.last_error.clone().unwrap_or_default();
    assert!(why.starts_with("throttled by "), "says why: {why}");
    assert!(
        !worker.throttles().is_empty(),
        "the worker lists the signal"
    );
    // the exempt kind runs to the end meanwhile, and the obeying job stays put
    wait_for(&store, running_through, "exempt completed", |r| {
        r.state == JobState::Completed
    })
    .await;
    let still = store.job_get(obeying).await.expect("get").expect("job");
    assert_eq!(still.state, JobState::Queued, "not claimed while throttled");
    assert_eq!(
        still.items_done, back.items_done,
        "nothing ran while throttled"
    );

    release(obeying).await;
    wait_for(&store, obeying, "completed after the release", |r| {
        r.state == JobState::Completed
    })
    .await;
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
    assert!(worker.throttles().is_empty(), "{:?}", worker.throttles());
    assert_eq!(job.recorder.items(obeying), (0..3_000).collect::<Vec<_>>());
    assert_eq!(
        exempt.recorder.items(running_through),
        (0..600).collect::<Vec<_>>()
    );
    let events = store.job_events(obeying, 50).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason == Some(InterruptReason::Throttled)),
        "{events:?}"
    );
}

/// An operator's throttle switch (on every queue) sends the running job of an
/// obeying kind back within about a second and keeps it waiting; a kind that opted
/// out keeps running; switching it off lets the job finish, each item once.
pub async fn throttle_switch_holds_jobs_back_until_off(store: Arc<dyn Store>) {
    let on = Arc::clone(&store);
    let off = Arc::clone(&store);
    obeyed(
        Arc::clone(&store),
        None,
        async move |_| {
            let mut switch = ThrottleSwitch::new(None, None, now_millis());
            switch.reason = Some("incident 42".into());
            on.throttle_on(&switch).await.expect("on");
        },
        async move |_| {
            assert!(off.throttle_off(None, None).await.expect("off"));
        },
    )
    .await;
}

/// A health check registered for the app throttles every obeying kind while it
/// says so, and while it fails (it cannot vouch for its service); once it passes
/// the job finishes, each item once.
pub async fn health_check_holds_jobs_back_until_it_passes(store: Arc<dyn Store>) {
    let lever = Lever::default();
    let down = lever.clone();
    let up = lever.clone();
    let st = Arc::clone(&store);
    obeyed(
        store,
        Some(lever),
        async move |_| down.0.store(1, Ordering::SeqCst),
        async move |id| {
            // failing counts as throttling too: nothing moves meanwhile
            let before = st.job_get(id).await.expect("get").expect("job");
            up.0.store(2, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = st.job_get(id).await.expect("get").expect("job");
            assert_eq!(
                (after.state, after.items_done),
                (JobState::Queued, before.items_done),
                "a failing check holds jobs back"
            );
            up.0.store(0, Ordering::SeqCst);
        },
    )
    .await;
}
