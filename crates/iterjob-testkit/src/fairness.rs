//! Fairness with fewer worker slots than long jobs: time slices, priorities, queues.
//! Run by every store through [`runtime_scenarios!`](crate::runtime_scenarios).

use std::sync::Arc;
use std::time::Duration;

use iterjob::store::{JobId, JobState, NewJob, Store};
use iterjob::{Registry, Worker};
use tokio::time::Instant;

use crate::scenarios::{CountingJob, CountingParams, fast_config};

async fn enqueue(store: &dyn Store, job: NewJob) -> JobId {
    store.job_insert(&job).await.expect("enqueue")
}

fn long(n: i64) -> serde_json::Value {
    serde_json::to_value(CountingParams {
        n,
        sleep_ms: 2,
        ..Default::default()
    })
    .expect("params")
}

/// Six long jobs on two slots: within a few time slices every one of them has run
/// (round robin by time slice, none waits for the others to finish). A job of higher
/// priority enqueued meanwhile starts within about a slice, takes a slot each time it
/// is claimable, and completes while the others are still far from done. A job in
/// another queue is left alone by a worker that does not serve it.
pub async fn fewer_slots_than_jobs_every_job_progresses(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let mut low = Vec::new();
    for _ in 0..6 {
        low.push(enqueue(&*store, NewJob::new("counting", long(2_000))).await);
    }
    let elsewhere = enqueue(
        &*store,
        NewJob::new("counting", long(10)).queue("elsewhere"),
    )
    .await;
    let mut config = fast_config();
    config.concurrency = 2;
    config.max_runtime = Duration::from_millis(40);
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        config,
    )
    .expect("config");
    let stop = worker.shutdown_token();
    let running = tokio::spawn(async move { worker.run().await });

    // every long job gets a turn, though only two run at a time
    let start = Instant::now();
    loop {
        let mut progressed = 0;
        for &id in &low {
            if !job.recorder.items(id).is_empty() {
                progressed += 1;
            }
        }
        if progressed == low.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {progressed} of {} jobs ran: time slices must rotate the slots",
            low.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for &id in &low {
        let record = store.job_get(id).await.unwrap().unwrap();
        assert!(
            record.state != JobState::Completed,
            "too short to finish yet"
        );
    }

    // an urgent job jumps the queue
    let enqueued = Instant::now();
    let urgent = enqueue(&*store, NewJob::new("counting", long(60)).priority(10)).await;
    loop {
        let record = store.job_get(urgent).await.unwrap().unwrap();
        if record.state == JobState::Completed {
            break;
        }
        assert!(
            enqueued.elapsed() < Duration::from_secs(20),
            "urgent job stuck: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let order = job.order.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let first_urgent = order
        .iter()
        .position(|(j, _)| *j == urgent)
        .expect("urgent ran");
    let last_urgent = order
        .iter()
        .rposition(|(j, _)| *j == urgent)
        .expect("urgent ran");
    let others_meanwhile = order[first_urgent..last_urgent]
        .iter()
        .filter(|(j, _)| *j != urgent)
        .count();
    // two slots: while the urgent job runs (re-claimed first after each of its time
    // slices), the others share the other slot only
    assert!(
        others_meanwhile <= 60 + 30,
        "{others_meanwhile} items of other jobs ran while the urgent job's 60 did"
    );
    for &id in &low {
        let record = store.job_get(id).await.unwrap().unwrap();
        assert!(
            record.state != JobState::Completed,
            "the urgent job finished first"
        );
    }
    assert!(
        job.recorder.items(elsewhere).is_empty(),
        "a worker only serves its own queues"
    );
    stop.cancel();
    running.await.expect("join").expect("worker");
}

/// A worker that claims ahead never keeps a long job waiting while another worker
/// is idle. Worker A (one slot, the default heartbeat interval of 5 s) works off
/// many one-item jobs, so it claims ahead, and its last claims take two long jobs
/// (2 s each): it starts one and holds the other. Worker B starts idle once the
/// first long job runs. The held job must go back to its queue and start on B
/// within about the hold limit (100 ms for runs this short), while the first still
/// runs on A: not after the first ends, as it did when a held job waited up to a
/// heartbeat interval.
pub async fn a_job_held_ahead_goes_to_an_idle_worker(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let mut config = fast_config();
    config.concurrency = 1;
    config.heartbeat_interval = iterjob::WorkerConfig::default().heartbeat_interval;
    config.lease = Duration::from_secs(30);
    let short = || {
        serde_json::to_value(CountingParams {
            n: 1,
            ..Default::default()
        })
    };
    let mut batch = Vec::new();
    for _ in 0..200 {
        batch.push(NewJob::new("counting", short().expect("params")));
    }
    store
        .job_insert_many(&batch)
        .await
        .expect("enqueue short jobs");
    let slow = || {
        serde_json::to_value(CountingParams {
            n: 20,
            sleep_ms: 100,
            ..Default::default()
        })
        .expect("params")
    };
    let first = enqueue(&*store, NewJob::new("counting", slow())).await;
    let second = enqueue(&*store, NewJob::new("counting", slow())).await;

    let start = |id: &str| {
        let mut config = config.clone();
        config.worker_id = id.to_string();
        let worker = Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            config,
        )
        .expect("valid config");
        let token = worker.shutdown_token();
        (token, tokio::spawn(async move { worker.run().await }))
    };
    let (stop_a, a) = start("worker-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    // the first long job has begun on A
    loop {
        let r = store.job_get(first).await.expect("get").expect("exists");
        if r.state == JobState::Running && r.items_done > 0 {
            assert_eq!(r.worker_id.as_deref(), Some("worker-a"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first long job never ran: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stop_b, b) = start("worker-b");
    loop {
        let done = |r: &iterjob::JobRecord| r.state == JobState::Completed;
        let f = store.job_get(first).await.expect("get").expect("exists");
        let s = store.job_get(second).await.expect("get").expect("exists");
        if done(&f) && done(&s) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the long jobs did not finish: {f:?} {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // worker A has one slot: if the second job's first item came before the first
    // job's last, the two ran at once, the second on B. (Order, not wall-clock
    // reads, so a starved test thread cannot make it pass or fail.)
    let order = job.order.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let at = |id: JobId, item: i64| {
        order
            .iter()
            .position(|&(j, i)| j == id && i == item)
            .unwrap_or_else(|| panic!("job {id} never processed item {item}"))
    };
    assert!(
        at(second, 0) < at(first, 19),
        "the second long job started only after the first ended: it waited in worker \
         A's buffer while worker B was idle"
    );
    for (stop, handle) in [(stop_a, a), (stop_b, b)] {
        stop.cancel();
        handle.await.expect("join").expect("worker");
    }
}
