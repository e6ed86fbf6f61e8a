//! Recurring schedules: the store's compare-and-set of a schedule's ticks
//! ([`Store::schedule_tick`]), run by every store through
//! [`store_conformance!`](crate::store_conformance), and workers racing for the same
//! ticks, run through [`runtime_scenarios!`](crate::runtime_scenarios).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use iterjob::schedule::{Overlap, Schedule};
use iterjob::store::{
    ClaimRequest, DEFAULT_QUEUE, JobFilter, JobState, NewJob, Outcome, ScheduleTick, Store,
    TickOutcome,
};
use iterjob::{Registry, Worker};
use serde_json::json;

use crate::scenarios::{CountingJob, CountingParams, fast_config};

fn tick(
    name: &str,
    previous: Option<i64>,
    at: i64,
    job: Option<NewJob>,
    skip: bool,
) -> ScheduleTick {
    ScheduleTick {
        name: name.into(),
        previous,
        tick: at,
        job,
        skip_if_running: skip,
    }
}

fn job(at: i64) -> NewJob {
    NewJob::new("sched", json!({})).unique_key(format!("schedule:nightly:{at}"))
}

/// `schedule_tick`: the first sight records the schedule; each tick is taken once,
/// from the value read (a stale reader does nothing); a tick while the previous job
/// has not finished is skipped under `skip_if_running` (still taken) and enqueued
/// without it; of many racing for one tick, one enqueues.
pub async fn schedule_ticks_are_taken_once(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(
        s.schedule_tick(&tick("nightly", None, 1_000, None, true))
            .await
            .expect("tick"),
        TickOutcome::Recorded
    );
    assert_eq!(
        s.schedule_tick(&tick("nightly", None, 1_500, None, true))
            .await
            .expect("tick"),
        TickOutcome::Stale,
        "another process created it first"
    );
    let first = match s
        .schedule_tick(&tick("nightly", Some(1_000), 2_000, Some(job(2_000)), true))
        .await
        .expect("tick")
    {
        TickOutcome::Enqueued(id) => id,
        other => panic!("expected the tick's job, got {other:?}"),
    };
    let record = s.job_get(first).await.expect("get").expect("job");
    assert_eq!(record.kind, "sched");
    assert_eq!(record.unique_key.as_deref(), Some("schedule:nightly:2000"));
    assert_eq!(
        s.schedule_tick(&tick("nightly", Some(1_000), 2_000, Some(job(2_000)), true))
            .await
            .expect("tick"),
        TickOutcome::Stale,
        "a tick is taken once"
    );
    // the first job has not run yet: the next tick is skipped, and still taken
    assert_eq!(
        s.schedule_tick(&tick("nightly", Some(2_000), 3_000, Some(job(3_000)), true))
            .await
            .expect("tick"),
        TickOutcome::SkippedRunning(first)
    );
    let states = s.schedule_states().await.expect("states");
    assert_eq!(states.len(), 1);
    assert_eq!(
        (states[0].last_tick, states[0].last_job),
        (3_000, Some(first))
    );
    // without the overlap check it is enqueued next to the first
    let second = match s
        .schedule_tick(&tick(
            "nightly",
            Some(3_000),
            4_000,
            Some(job(4_000)),
            false,
        ))
        .await
        .expect("tick")
    {
        TickOutcome::Enqueued(id) => id,
        other => panic!("expected a job, got {other:?}"),
    };
    assert_ne!(second, first);
    // once the last job finished, the next tick runs
    for id in [first, second] {
        let claimed = s
            .job_claim(&ClaimRequest {
                worker_id: "schedule-conformance".into(),
                queues: vec![DEFAULT_QUEUE.into()],
                kinds: vec!["sched".into()],
                limit: 1,
                lease: Duration::from_secs(60),
            })
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "job {id}");
        s.job_release(
            claimed[0].job.id,
            claimed[0].token,
            None,
            &Outcome::Completed,
        )
        .await
        .expect("release");
    }
    assert!(matches!(
        s.schedule_tick(&tick("nightly", Some(4_000), 5_000, Some(job(5_000)), true))
            .await
            .expect("tick"),
        TickOutcome::Enqueued(_)
    ));

    // many at once, from the same reading: one wins
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .schedule_tick(&tick(
                        "nightly",
                        Some(5_000),
                        6_000,
                        Some(job(6_000)),
                        false,
                    ))
                    .await
                    .expect("tick")
            })
        })
        .collect();
    let mut enqueued = 0;
    for racer in racers {
        match racer.await.expect("join") {
            TickOutcome::Enqueued(_) => enqueued += 1,
            TickOutcome::Stale => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(enqueued, 1, "exactly one racer enqueued the tick");
}

/// Four workers with the same every-second schedule race for its ticks for a few
/// seconds: every tick has exactly one job (distinct unique keys, one job each) and
/// the jobs run.
pub async fn workers_racing_a_schedule_enqueue_each_tick_once(store: Arc<dyn Store>) {
    let job = CountingJob::new();
    let params = CountingParams {
        n: 2,
        ..Default::default()
    };
    let schedule = Schedule::of("every-second", "* * * * * *", &job, &params)
        .expect("schedule")
        .overlap(Overlap::Enqueue);
    let mut config = fast_config();
    config.control_interval = Duration::from_millis(20);
    let workers: Vec<Arc<Worker>> = (0..4)
        .map(|_| {
            Arc::new(
                Worker::new(
                    Arc::clone(&store),
                    Registry::new().with(job.clone()).schedule(schedule.clone()),
                    config.clone(),
                )
                .expect("worker"),
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
    tokio::time::sleep(Duration::from_millis(3_600)).await;
    for w in &workers {
        w.shutdown_token().cancel();
    }
    for run in runs {
        run.await.expect("join").expect("worker");
    }
    let jobs = store
        .job_list(&JobFilter {
            limit: Some(1_000),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert!(jobs.len() >= 2, "ticks enqueued jobs: {}", jobs.len());
    let keys: BTreeSet<String> = jobs.iter().filter_map(|j| j.unique_key.clone()).collect();
    assert_eq!(keys.len(), jobs.len(), "one job per tick: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("schedule:every-second:")));
    let state = &store.schedule_states().await.expect("states")[0];
    assert_eq!(state.name, "every-second");
    assert!(
        jobs.iter().any(|j| j.state == JobState::Completed),
        "the jobs run"
    );
}
