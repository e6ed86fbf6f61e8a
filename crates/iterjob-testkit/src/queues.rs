//! Queues: store conformance scenarios for pausing and resuming a queue and for the
//! per-queue figures (`queue_stats`), run by every store through
//! [`store_conformance!`](crate::store_conformance), and the runtime scenario of a
//! queue paused under running jobs, run through
//! [`runtime_scenarios!`](crate::runtime_scenarios).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use iterjob::store::{
    ClaimRequest, Claimed, InterruptReason, JobEventKind, JobId, JobState, NewJob, Outcome,
    Progress, QueuePauseMode, QueueStats, Store, now_millis,
};
use iterjob::{Error, Registry, Worker};
use serde_json::json;

use crate::scenarios::{CountingJob, CountingParams, fast_config};

const LEASE: Duration = Duration::from_secs(60);

async fn insert(store: &dyn Store, kind: &str, queue: &str) -> JobId {
    store
        .job_insert(&NewJob::new(kind, json!({})).queue(queue))
        .await
        .expect("job_insert")
}

async fn claim(store: &dyn Store, kinds: &[&str], queues: &[&str]) -> Vec<Claimed> {
    store
        .job_claim(&ClaimRequest {
            worker_id: "queue-conformance".into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            limit: 100,
            lease: LEASE,
        })
        .await
        .expect("job_claim")
}

fn ids(claimed: &[Claimed]) -> BTreeSet<JobId> {
    claimed.iter().map(|c| c.job.id).collect()
}

async fn release(store: &dyn Store, run: &Claimed, progress: Option<&Progress>, outcome: Outcome) {
    store
        .job_release(run.job.id, run.token, progress, &outcome)
        .await
        .expect("job_release");
}

/// A paused queue is claimed from by no one; the other queues of the same claim are;
/// pausing again changes the mode and keeps `since`; resuming makes its jobs
/// claimable at once; a job interrupted because its queue was paused records why.
pub async fn paused_queue_is_not_claimed(store: Arc<dyn Store>) {
    let store = &*store;
    let bulk = [
        insert(store, "qp", "bulk").await,
        insert(store, "qp", "bulk").await,
    ];
    let other = insert(store, "qp", "default").await;

    let pause = store
        .queue_pause("bulk", QueuePauseMode::Interrupt)
        .await
        .expect("pause");
    assert_eq!(pause.queue, "bulk");
    assert_eq!(pause.mode, QueuePauseMode::Interrupt);
    assert!(
        (now_millis() - pause.since).abs() < 60_000,
        "since: the store's now"
    );

    let claimed = claim(store, &["qp"], &["bulk", "default"]).await;
    assert_eq!(
        ids(&claimed),
        BTreeSet::from([other]),
        "only the unpaused queue"
    );
    assert!(claim(store, &["qp"], &["bulk"]).await.is_empty());

    // pausing again: the new mode, the first `since`
    let again = store
        .queue_pause("bulk", QueuePauseMode::LetRun)
        .await
        .expect("pause again");
    assert_eq!(
        (again.since, again.mode),
        (pause.since, QueuePauseMode::LetRun)
    );
    // a queue without jobs may be paused too
    store
        .queue_pause("not-yet", QueuePauseMode::Interrupt)
        .await
        .expect("pause an empty queue");
    let pauses = store.queue_pauses().await.expect("pauses");
    assert_eq!(
        pauses
            .iter()
            .map(|p| (p.queue.as_str(), p.mode))
            .collect::<Vec<_>>(),
        [
            ("bulk", QueuePauseMode::LetRun),
            ("not-yet", QueuePauseMode::Interrupt)
        ]
    );
    assert!(matches!(
        store.queue_pause("", QueuePauseMode::Interrupt).await,
        Err(Error::Config(ref m)) if m.contains("queue name")
    ));

    assert!(store.queue_resume("bulk").await.expect("resume"));
    assert!(
        !store.queue_resume("bulk").await.expect("resume twice"),
        "no longer paused"
    );
    assert!(!store.queue_resume("never-paused").await.expect("resume"));
    let claimed = claim(store, &["qp"], &["bulk"]).await;
    assert_eq!(
        ids(&claimed),
        BTreeSet::from(bulk),
        "claimable again at once"
    );

    // a run interrupted by the pause goes back with its reason
    let run = &claimed[0];
    release(
        store,
        run,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::QueuePaused,
            run_at: now_millis(),
            error: None,
        },
    )
    .await;
    let job = store.job_get(run.job.id).await.expect("get").expect("job");
    assert_eq!(
        (job.state, job.interruptions, job.attempts),
        (JobState::Queued, 1, 0)
    );
    let events = store.job_events(run.job.id, 10).await.expect("events");
    assert!(
        events.iter().any(|e| e.kind == JobEventKind::Interrupted
            && e.reason == Some(InterruptReason::QueuePaused)),
        "the history says the queue was paused: {events:?}"
    );
}

fn queue<'a>(stats: &'a [QueueStats], name: &str) -> &'a QueueStats {
    stats
        .iter()
        .find(|q| q.queue == name)
        .unwrap_or_else(|| panic!("queue `{name}` listed in {stats:?}"))
}

/// `queue_stats`: counts per state, what waits and since when, what is scheduled,
/// what a pause holds, the items left and the work they estimate at the kind's
/// measured rate; a split parent counts as its partitions.
pub async fn queue_stats_count_and_estimate(store: Arc<dyn Store>) {
    let store = &*store;
    // two completed jobs of 100 items in 1 s each: 100 items/s
    for _ in 0..2 {
        insert(store, "qs", "work").await;
    }
    let runs = claim(store, &["qs"], &["work"]).await;
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let done = Progress {
            cursor: Some(json!(100)),
            items_done: 100,
            items_total: Some(100),
            running_ms: 1_000,
        };
        release(store, run, Some(&done), Outcome::Completed).await;
    }
    // one running, half way through 100 items
    let running = insert(store, "qs", "work").await;
    let run = claim(store, &["qs"], &["work"]).await;
    assert_eq!(ids(&run), BTreeSet::from([running]));
    let half = Progress {
        cursor: Some(json!(50)),
        items_done: 50,
        items_total: Some(100),
        running_ms: 500,
    };
    store
        .job_checkpoint(running, run[0].token, &half, LEASE)
        .await
        .expect("checkpoint");
    // two waiting (totals unknown yet: a completed job's worth each), one scheduled
    let before = now_millis();
    insert(store, "qs", "work").await;
    insert(store, "qs", "work").await;
    store
        .job_insert(
            &NewJob::new("qs", json!({}))
                .queue("work")
                .run_at(now_millis() + 3_600_000),
        )
        .await
        .expect("insert scheduled");
    // a paused queue holds its waiting jobs
    insert(store, "qs", "held").await;
    store
        .queue_pause("held", QueuePauseMode::Interrupt)
        .await
        .expect("pause");
    // a parent split in two partitions counts as its two partitions
    let parent = store
        .job_insert(&NewJob::new("qs", json!({})).queue("parts").partitions(2))
        .await
        .expect("insert parent");
    let planning = claim(store, &["qs"], &["parts"]).await;
    assert_eq!(ids(&planning), BTreeSet::from([parent]));
    store
        .job_partition(
            parent,
            planning[0].token,
            &[json!({"p": 0}), json!({"p": 1})],
        )
        .await
        .expect("partition");

    let stats = store.queue_stats().await.expect("queue_stats");
    let names: Vec<&str> = stats.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(names, ["held", "parts", "work"], "every queue, by name");

    let work = queue(&stats, "work");
    assert!(work.paused.is_none());
    assert_eq!(work.counts[&JobState::Completed], 2);
    assert_eq!(work.counts[&JobState::Running], 1);
    assert_eq!(work.counts[&JobState::Queued], 3);
    assert_eq!(work.counts[&JobState::Failed], 0);
    assert_eq!((work.waiting, work.scheduled, work.held), (2, 1, 0));
    let oldest = work.oldest_wait_ms.expect("jobs wait");
    assert!(oldest <= (now_millis() - before) as u64 + 1_000, "{oldest}");
    assert_eq!(work.items_left, 50);
    // 50 items at 100/s, plus two jobs at the average completed job's 1 s
    assert!(
        (work.work_left_secs - 2.5).abs() < 0.01,
        "work left {}",
        work.work_left_secs
    );
    assert_eq!(work.unestimated_jobs, 0);

    let held = queue(&stats, "held");
    assert_eq!(
        held.paused.as_ref().map(|p| p.mode),
        Some(QueuePauseMode::Interrupt)
    );
    assert_eq!((held.waiting, held.held), (0, 1));
    assert_eq!(held.counts[&JobState::Queued], 1);
    assert_eq!(held.work_left_secs, 0.0, "paused work is no backlog");

    let parts = queue(&stats, "parts");
    assert_eq!(parts.counts[&JobState::Queued], 2, "the partitions");
    assert_eq!(parts.counts[&JobState::Running], 0, "not the split parent");
    assert_eq!(parts.waiting, 2);
}

/// A queue paused under running jobs: in `interrupt` mode they stop at their next
/// item and wait in the queue (reason `queue_paused`, no attempt used); in
/// `let_run` mode they go on while nothing new starts; once resumed every job
/// finishes, every item walked exactly once.
pub async fn queue_pause_interrupts_or_lets_runs_finish(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let enqueue = |queue: &'static str, n: i64| {
        let store = Arc::clone(&store);
        let job = job.clone();
        async move {
            let params = CountingParams {
                n,
                sleep_ms: 2,
                ..Default::default()
            };
            store
                .job_insert(&NewJob::of(&job, &params).expect("params").queue(queue))
                .await
                .expect("enqueue")
        }
    };
    let stopped = enqueue("stop", 1500).await;
    let let_run = enqueue("drain", 300).await;
    let mut config = fast_config();
    config.queues = vec!["stop".into(), "drain".into()];
    config.control_interval = Duration::from_millis(50);
    let worker = Arc::new(
        Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            config,
        )
        .expect("config"),
    );
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    let get = |id| {
        let store = Arc::clone(&store);
        async move { store.job_get(id).await.expect("get").expect("job") }
    };
    // both running
    for _ in 0..500 {
        if get(stopped).await.state == JobState::Running
            && get(let_run).await.state == JobState::Running
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
        .queue_pause("stop", QueuePauseMode::Interrupt)
        .await
        .expect("pause");
    store
        .queue_pause("drain", QueuePauseMode::LetRun)
        .await
        .expect("pause");
    let waiting = enqueue("drain", 10).await;
    let mut back = None;
    for _ in 0..500 {
        let r = get(stopped).await;
        if r.state == JobState::Queued && r.interruptions > 0 {
            back = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back = back.expect("the interrupted queue's run went back to the queue");
    assert!(
        back.items_done > 0 && back.items_done < 1500,
        "{}",
        back.items_done
    );
    assert_eq!(back.attempts, 0);
    // the let-run job finishes its run; the job enqueued after the pause does not start
    for _ in 0..1000 {
        if get(let_run).await.state == JobState::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(let_run).await.state, JobState::Completed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(waiting).await.state,
        JobState::Queued,
        "paused: not started"
    );
    let still = get(stopped).await;
    assert_eq!(
        (still.state, still.items_done),
        (JobState::Queued, back.items_done),
        "nothing runs in the paused queue"
    );

    assert!(store.queue_resume("stop").await.expect("resume"));
    assert!(store.queue_resume("drain").await.expect("resume"));
    for _ in 0..2000 {
        if get(stopped).await.state == JobState::Completed
            && get(waiting).await.state == JobState::Completed
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
    assert_eq!(get(stopped).await.state, JobState::Completed);
    assert_eq!(get(waiting).await.state, JobState::Completed);
    assert_eq!(job.recorder.items(stopped), (0..1500).collect::<Vec<_>>());
    assert_eq!(job.recorder.items(let_run), (0..300).collect::<Vec<_>>());
    let events = store.job_events(stopped, 50).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason == Some(InterruptReason::QueuePaused)),
        "{events:?}"
    );
}

/// Named leases: one holder at a time, renewed by its holder, taken over once
/// expired, given up by its holder only; of many racing for a free lease, one wins.
pub async fn leases_have_one_holder(store: Arc<dyn Store>) {
    let s = &*store;
    let long = Duration::from_secs(60);
    assert!(s.lease_acquire("prune", "a", long).await.expect("acquire"));
    assert!(
        !s.lease_acquire("prune", "b", long).await.expect("acquire"),
        "held by a"
    );
    assert!(
        s.lease_acquire("prune", "a", long).await.expect("renew"),
        "a renews"
    );
    assert!(
        s.lease_acquire("other", "b", long).await.expect("acquire"),
        "names are independent"
    );
    s.lease_release("prune", "b").await.expect("release");
    assert!(
        !s.lease_acquire("prune", "b", long).await.expect("acquire"),
        "b cannot give up a's lease"
    );
    s.lease_release("prune", "a").await.expect("release");
    assert!(
        s.lease_acquire("prune", "b", long).await.expect("acquire"),
        "free after a gave it up"
    );

    // an expired lease is taken over, and its old holder no longer renews it
    assert!(
        s.lease_acquire("short", "a", Duration::from_millis(100))
            .await
            .expect("acquire")
    );
    assert!(!s.lease_acquire("short", "b", long).await.expect("acquire"));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        s.lease_acquire("short", "b", long)
            .await
            .expect("take over")
    );
    assert!(
        !s.lease_acquire("short", "a", long).await.expect("acquire"),
        "a lost it"
    );

    // many at once: one wins
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .lease_acquire("race", &format!("racer-{i}"), long)
                    .await
                    .expect("acquire")
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.expect("join"));
    }
    assert_eq!(winners, 1, "exactly one racer holds the lease");
}

/// Retention run by the workers: with two workers sharing the store, the finished
/// jobs past their age are deleted (with their history) by whichever holds the
/// retention lease, a state kept for ever stays, and unfinished jobs are never
/// touched; the lease is held by one of them, not by anyone else.
pub async fn retention_prunes_old_finished_jobs(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let mut ids = Vec::new();
    for _ in 0..7 {
        let params = CountingParams {
            n: 3,
            ..Default::default()
        };
        ids.push(
            store
                .job_insert(&NewJob::of(&job, &params).expect("params"))
                .await
                .expect("enqueue"),
        );
    }
    let failing = store
        .job_insert(
            &NewJob::of(
                &job,
                &CountingParams {
                    n: 3,
                    fail_at: Some(1),
                    fatal: true,
                    ..Default::default()
                },
            )
            .expect("params"),
        )
        .await
        .expect("enqueue");
    let paused = store
        .job_insert(
            &NewJob::of(
                &job,
                &CountingParams {
                    n: 3,
                    ..Default::default()
                },
            )
            .expect("params"),
        )
        .await
        .expect("enqueue");
    store.job_pause(paused).await.expect("pause");

    let mut config = fast_config();
    let mut retention = iterjob::Retention::default();
    retention.completed = Some(Duration::ZERO);
    retention.failed = None;
    retention.interval = Duration::from_millis(50);
    retention.batch = 2;
    retention.pause = Duration::from_millis(1);
    config.retention = Some(retention);
    let workers: Vec<Arc<Worker>> = (0..2)
        .map(|_| {
            Arc::new(
                Worker::new(
                    Arc::clone(&store),
                    Registry::new().with(job.clone()),
                    config.clone(),
                )
                .expect("config"),
            )
        })
        .collect();
    let runs: Vec<_> = workers
        .iter()
        .map(|w| {
            let w = Arc::clone(w);
            tokio::spawn(async move { w.run().await })
        })
        .collect();
    let mut gone = false;
    for _ in 0..500 {
        let mut left = 0;
        for &id in &ids {
            left += usize::from(store.job_get(id).await.expect("get").is_some());
        }
        if left == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "every completed job was pruned");
    assert!(
        !store
            .lease_acquire(
                "iterjob:retention",
                "somebody-else",
                Duration::from_secs(60)
            )
            .await
            .expect("lease"),
        "a worker holds the retention lease"
    );
    for w in &workers {
        w.shutdown_token().cancel();
    }
    for run in runs {
        run.await.expect("join").expect("worker");
    }
    for id in ids {
        assert!(
            store.job_events(id, 10).await.expect("events").is_empty(),
            "history gone"
        );
    }
    let failed = store
        .job_get(failing)
        .await
        .expect("get")
        .expect("failed jobs are kept");
    assert_eq!(failed.state, JobState::Failed);
    let paused = store
        .job_get(paused)
        .await
        .expect("get")
        .expect("paused jobs are kept");
    assert_eq!(paused.state, JobState::Paused);
    // stopped workers gave the lease up: another takes it at once
    assert!(
        store
            .lease_acquire(
                "iterjob:retention",
                "somebody-else",
                Duration::from_secs(60)
            )
            .await
            .expect("lease"),
        "the lease is free once the workers stopped"
    );
}
