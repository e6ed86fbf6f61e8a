//! Partitioned jobs: store conformance scenarios (planning, parents' progress and
//! lifecycle, cascades, splits) and runtime scenarios (parallel walks, shutdowns,
//! dynamic splitting, failure policies), run by every store through
//! [`store_conformance!`](crate::store_conformance) and
//! [`runtime_scenarios!`](crate::runtime_scenarios).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator};
use iterjob::partition::{int_ranges, split_int_range};
use iterjob::store::{
    ClaimRequest, Claimed, DEFAULT_QUEUE, JobId, JobRecord, JobState, NewJob, Outcome, Progress,
    Split, SplitRequest, Store,
};
use iterjob::{
    Error, Job, JobContext, JobError, KindSettings, PartitionFailure, Registry, Worker,
    WorkerConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::scenarios::fast_config;

const LEASE: Duration = Duration::from_secs(60);

/// The partitioned jobs' enqueuer's trace context, which their partitions inherit.
const PARENT_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn get(store: &dyn Store, id: JobId) -> JobRecord {
    store
        .job_get(id)
        .await
        .expect("job_get")
        .unwrap_or_else(|| panic!("job {id} should exist"))
}

async fn claim_all(store: &dyn Store, kind: &str, limit: usize) -> Vec<Claimed> {
    store
        .job_claim(&ClaimRequest {
            worker_id: "partition-conformance".into(),
            queues: vec![DEFAULT_QUEUE.into()],
            kinds: vec![kind.into()],
            limit,
            lease: LEASE,
        })
        .await
        .expect("job_claim")
}

/// Enqueues a parent of `n` partitions, claims it and splits it into `children`.
async fn planned(store: &dyn Store, kind: &str, children: &[Value]) -> (JobId, Vec<JobId>) {
    let parent = NewJob::new(kind, json!({"whole": true}))
        .priority(3)
        .max_attempts(4)
        .partitions(children.len().max(1) as u32)
        .trace_context(Some(PARENT_TRACE.to_string()));
    let id = store.job_insert(&parent).await.expect("insert parent");
    let claimed = claim_all(store, kind, 1).await;
    assert_eq!(claimed.len(), 1, "the parent is claimable like any job");
    assert_eq!(
        claimed[0].job.partitions,
        Some(children.len().max(1) as u32)
    );
    let ids = store
        .job_partition(id, claimed[0].token, children)
        .await
        .expect("job_partition");
    (id, ids)
}

fn progress(done: u64, total: Option<u64>) -> Progress {
    Progress {
        cursor: Some(json!(done)),
        items_done: done,
        items_total: total,
        running_ms: 10,
    }
}

fn parts(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({ "part": i })).collect()
}

// ---------------------------------------------------------------------------------
// store conformance

/// `job_count_top_level_by_state` counts a partitioned job once, by the state it
/// shows (running while a partition runs, queued when none runs and one waits,
/// paused when what is left is paused), and its partitions not at all;
/// `queue_depths` counts what `queue_rows` counts (partitions, not their parent).
pub async fn top_level_counts_count_a_partitioned_job_once(store: Arc<dyn Store>) {
    let store = &*store;
    let count = |state: JobState| async move {
        store
            .job_count_top_level_by_state()
            .await
            .expect("job_count_top_level_by_state")
            .into_iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| n)
            .expect("every state is counted")
    };
    let before = [
        count(JobState::Queued).await,
        count(JobState::Running).await,
        count(JobState::Paused).await,
    ];
    let now = |q: u64, r: u64, p: u64| [before[0] + q, before[1] + r, before[2] + p];
    let counted = || async {
        // the queues' depths agree with `queue_rows` (split parents left out)
        let mut from_rows: std::collections::BTreeMap<(String, JobState), u64> = Default::default();
        for row in store
            .queue_rows(iterjob::store::now_millis())
            .await
            .unwrap()
        {
            *from_rows.entry((row.queue, row.state)).or_default() += row.jobs;
        }
        let depths: std::collections::BTreeMap<(String, JobState), u64> = store
            .queue_depths()
            .await
            .expect("queue_depths")
            .into_iter()
            .map(|(q, s, n)| ((q, s), n))
            .collect();
        assert_eq!(depths, from_rows, "queue_depths counts as queue_rows does");
        [
            count(JobState::Queued).await,
            count(JobState::Running).await,
            count(JobState::Paused).await,
        ]
    };
    store
        .job_insert(&NewJob::new("p_count_plain", json!({})))
        .await
        .unwrap();
    let (parent, children) = planned(store, "p_count", &parts(3)).await;
    assert_eq!(
        counted().await,
        now(2, 0, 0),
        "the plain job and the split parent, which shows queued; no partition"
    );
    let all: u64 = store
        .job_count_by_state()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    let top: u64 = store
        .job_count_top_level_by_state()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(all - top, 3, "job_count_by_state counts the partitions too");

    let run = claim_all(store, "p_count", 1).await.remove(0);
    assert_eq!(
        counted().await,
        now(1, 1, 0),
        "a partition runs: so does the parent"
    );
    store
        .job_release(
            run.job.id,
            run.token,
            Some(&progress(10, Some(10))),
            &Outcome::Completed,
        )
        .await
        .unwrap();
    assert_eq!(counted().await, now(2, 0, 0), "none runs, two wait");
    for child in children.iter().filter(|c| **c != run.job.id) {
        store.job_pause(*child).await.unwrap();
    }
    assert_eq!(
        get(store, parent).await.state,
        JobState::Paused,
        "what is left is paused"
    );
    assert_eq!(counted().await, now(1, 0, 1), "counted as it shows: paused");
}

/// Planning inserts the children (copying kind, queue, priority and attempts) and
/// leaves the parent running without a worker; only the children are claimable; a
/// stale token or a job without partitions is refused.
pub async fn partition_creates_children(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_create", &parts(3)).await;
    assert_eq!(children.len(), 3);
    let record = get(store, parent).await;
    assert_eq!(
        record.state,
        JobState::Queued,
        "split, with every partition waiting: the parent shows queued"
    );
    assert_eq!(record.worker_id, None, "no worker holds a split parent");
    assert_eq!(record.lease_expires_at, None);
    assert!(record.is_parent());

    let listed = store.job_partitions(parent).await.expect("job_partitions");
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), children);
    for (i, child) in listed.iter().enumerate() {
        assert_eq!(child.parent_id, Some(parent));
        assert_eq!(child.state, JobState::Queued);
        assert_eq!(child.kind, "p_create");
        assert_eq!(child.priority, 3);
        assert_eq!(child.max_attempts, 4);
        assert_eq!(child.partitions, None);
        assert_eq!(child.params, json!({ "part": i }));
        assert_eq!(
            child.trace_context.as_deref(),
            Some(PARENT_TRACE),
            "runs of a partition join the enqueuer's trace"
        );
    }
    assert!(store.job_partitions(children[0]).await.unwrap().is_empty());

    let claimed = claim_all(store, "p_create", 10).await;
    let mut ids: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
    ids.sort();
    assert_eq!(
        ids, children,
        "the children are claimable, the parent is not"
    );
    assert_eq!(
        get(store, parent).await.state,
        JobState::Running,
        "a partition runs: so does the parent"
    );
    let listed = |state| async move {
        store
            .job_list(&iterjob::JobFilter {
                state: Some(state),
                kind: Some("p_create".into()),
                top_level: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(JobState::Running).await, vec![parent]);

    let rescued = store.job_rescue_expired(3).await.expect("rescue");
    assert!(
        rescued.iter().all(|r| r.id != parent),
        "a split parent has no lease to expire"
    );
    assert_eq!(get(store, parent).await.state, JobState::Running);

    // a deploy interrupts every partition: none runs, so the parent shows queued
    // and is no longer listed among the running jobs
    for run in &claimed {
        store
            .job_release(
                run.job.id,
                run.token,
                Some(&progress(1, Some(10))),
                &Outcome::Interrupted {
                    reason: iterjob::InterruptReason::Shutdown,
                    run_at: iterjob::store::now_millis(),
                    error: None,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(get(store, parent).await.state, JobState::Queued);
    assert!(listed(JobState::Running).await.is_empty());
    assert_eq!(
        listed(JobState::Queued).await,
        vec![parent],
        "listed among the queued jobs by the state it shows"
    );
    let everything_queued = store
        .job_list(&iterjob::JobFilter {
            state: Some(JobState::Queued),
            kind: Some("p_create".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut newest_first: Vec<JobId> = children.iter().rev().copied().collect();
    newest_first.push(parent);
    assert_eq!(
        everything_queued.iter().map(|r| r.id).collect::<Vec<_>>(),
        newest_first,
        "the partitions and their parent, newest first"
    );
    // keyset pages of one: the parent comes on the page below its first partition
    let page = store
        .job_list(&iterjob::JobFilter {
            state: Some(JobState::Queued),
            kind: Some("p_create".into()),
            before_id: Some(children[0]),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![parent]);
    let page = store
        .job_list(&iterjob::JobFilter {
            state: Some(JobState::Queued),
            kind: Some("p_create".into()),
            before_id: Some(parent),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.is_empty(), "nothing below it: {page:?}");
    // an operator pauses every partition alone: the parent shows paused, and is
    // listed so
    for child in &children {
        store.job_pause(*child).await.unwrap();
    }
    assert_eq!(get(store, parent).await.state, JobState::Paused);
    assert_eq!(listed(JobState::Paused).await, vec![parent]);
    assert!(listed(JobState::Queued).await.is_empty());
    for child in &children {
        store.job_resume(*child).await.unwrap();
    }
    assert_eq!(listed(JobState::Queued).await, vec![parent]);

    // a stale planning token
    let other = store
        .job_insert(&NewJob::new("p_create2", json!({})).partitions(2))
        .await
        .unwrap();
    let claimed = claim_all(store, "p_create2", 1).await;
    let token = claimed[0].token;
    store
        .job_release(other, token, None, &Outcome::Completed)
        .await
        .unwrap();
    let err = store
        .job_partition(other, token, &parts(2))
        .await
        .expect_err("planning after the run ended");
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");

    // a job enqueued without partitions cannot be split into them
    let plain = store
        .job_insert(&NewJob::new("p_create3", json!({})))
        .await
        .unwrap();
    let claimed = claim_all(store, "p_create3", 1).await;
    let err = store
        .job_partition(plain, claimed[0].token, &parts(2))
        .await
        .expect_err("a plain job has no partitions");
    assert!(!matches!(err, Error::LeaseLost { .. }), "{err:?}");
}

/// A parent's progress is its children's: items done summed, the total summed once
/// every child knows its own; a top-level listing shows the parent, not its
/// children.
pub async fn parent_progress_sums_children(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_sum", &parts(2)).await;
    let claimed = claim_all(store, "p_sum", 2).await;
    let token = |id| claimed.iter().find(|c| c.job.id == id).unwrap().token;
    store
        .job_checkpoint(
            children[0],
            token(children[0]),
            &progress(30, Some(100)),
            LEASE,
        )
        .await
        .unwrap();
    store
        .job_checkpoint(children[1], token(children[1]), &progress(12, None), LEASE)
        .await
        .unwrap();
    let record = get(store, parent).await;
    assert_eq!(record.items_done, 42);
    assert_eq!(
        record.items_total, None,
        "one child does not know its total yet"
    );
    store
        .job_checkpoint(
            children[1],
            token(children[1]),
            &progress(20, Some(50)),
            LEASE,
        )
        .await
        .unwrap();
    let record = get(store, parent).await;
    assert_eq!((record.items_done, record.items_total), (50, Some(150)));
    let listed = store
        .job_list(&iterjob::JobFilter {
            kind: Some("p_sum".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed_parent = listed.iter().find(|r| r.id == parent).expect("listed");
    assert_eq!(
        (listed_parent.items_done, listed_parent.items_total),
        (50, Some(150))
    );
    assert!(
        children.iter().all(|c| listed.iter().any(|r| r.id == *c)),
        "a plain listing shows the partitions too"
    );
    // top-level only: the parent, once, and none of its partitions
    let top = store
        .job_list(&iterjob::JobFilter {
            kind: Some("p_sum".into()),
            top_level: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = top.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![parent], "top-level listing");
    assert_eq!((top[0].items_done, top[0].items_total), (50, Some(150)));

    // each partition says it ran for a minute, side by side: the parent's running
    // time is its wall-clock span (seconds here), not their sum (two minutes), so
    // its rate and ETA are the job's real ones
    for (child, done, total) in [(children[0], 30, 100), (children[1], 20, 50)] {
        let minute = Progress {
            running_ms: 60_000,
            ..progress(done, Some(total))
        };
        store
            .job_checkpoint(child, token(child), &minute, LEASE)
            .await
            .unwrap();
    }
    let record = get(store, parent).await;
    let started = record.started_at.expect("the parent started");
    let span = u64::try_from(iterjob::store::now_millis() - started).unwrap();
    assert!(
        record.running_ms <= span && record.running_ms + 5_000 >= span,
        "the parent's running time {} ms is its wall-clock span ({span} ms so far), not the \
         partitions' sum",
        record.running_ms
    );
}

/// The parent completes when its last child completes, and fails (naming the
/// child) when one failed; retrying the parent retries that child only.
pub async fn parent_finishes_with_its_children(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_finish", &parts(3)).await;
    let claimed = claim_all(store, "p_finish", 3).await;
    let token = |id| claimed.iter().find(|c| c.job.id == id).unwrap().token;
    store
        .job_release(
            children[0],
            token(children[0]),
            Some(&progress(5, Some(5))),
            &Outcome::Completed,
        )
        .await
        .unwrap();
    assert_eq!(get(store, parent).await.state, JobState::Running);
    store
        .job_release(
            children[1],
            token(children[1]),
            Some(&progress(2, Some(5))),
            &Outcome::Failed {
                error: "row 7 is corrupt".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        get(store, parent).await.state,
        JobState::Running,
        "one child still runs"
    );
    store
        .job_release(
            children[2],
            token(children[2]),
            Some(&progress(5, Some(5))),
            &Outcome::Completed,
        )
        .await
        .unwrap();
    let record = get(store, parent).await;
    assert_eq!(record.state, JobState::Failed);
    assert!(record.finished_at.is_some());
    let error = record.last_error.expect("the parent says why");
    assert!(error.contains(&children[1].to_string()), "{error}");
    assert!(error.contains("row 7 is corrupt"), "{error}");

    let retried = store.job_retry(parent).await.expect("retry parent");
    assert_eq!(
        retried.state,
        JobState::Queued,
        "running again, its retried partition waits in its queue"
    );
    assert_eq!(retried.finished_at, None);
    let failed = get(store, children[1]).await;
    assert_eq!(failed.state, JobState::Queued);
    assert_eq!(failed.attempts, 0);
    assert_eq!(failed.items_done, 2, "retry resumes from the checkpoint");
    assert_eq!(get(store, children[0]).await.state, JobState::Completed);
    let again = claim_all(store, "p_finish", 3).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job.id, children[1]);
    store
        .job_release(
            children[1],
            again[0].token,
            Some(&progress(5, Some(5))),
            &Outcome::Completed,
        )
        .await
        .unwrap();
    let record = get(store, parent).await;
    assert_eq!(record.state, JobState::Completed);
    assert_eq!((record.items_done, record.items_total), (15, Some(15)));

    // no partitions at all: the parent completes at once
    let (empty, none) = planned(store, "p_finish_empty", &[]).await;
    assert!(none.is_empty());
    assert_eq!(get(store, empty).await.state, JobState::Completed);
}

/// Deleting a partitioned job takes its partitions along, never some of them: it is
/// refused while a partition runs or waits, and a partition cannot be deleted alone.
pub async fn delete_takes_partitions_along(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_delete", &parts(3)).await;
    let running = claim_all(store, "p_delete", 1).await;
    let refused = |what: &str, err: Error, hint: &str| match err {
        Error::InvalidTransition {
            action, hint: h, ..
        } => {
            assert_eq!(action, "delete", "{what}");
            assert!(h.contains(hint), "{what}: {h}");
        }
        other => panic!("{what}: expected InvalidTransition, got {other:?}"),
    };
    let err = store
        .job_delete(parent)
        .await
        .expect_err("partitions still run");
    refused("a running partition", err, "cancel or pause");
    let err = store
        .job_delete(children[0])
        .await
        .expect_err("a partition alone");
    refused("a partition alone", err, "delete that job");
    // paused with one partition still running: still refused
    store.job_pause(parent).await.expect("pause parent");
    let err = store.job_delete(parent).await.expect_err("one still runs");
    refused("a partition pausing", err, "cancel or pause");
    store
        .job_release(running[0].job.id, running[0].token, None, &Outcome::Paused)
        .await
        .expect("the running partition pauses");
    let other = store
        .job_insert(&NewJob::new("p_delete_other", json!({})))
        .await
        .expect("insert another job");
    assert_eq!(
        store.job_delete(parent).await.expect("delete"),
        4,
        "1 + 3 partitions"
    );
    for id in std::iter::once(parent).chain(children) {
        assert!(
            store.job_get(id).await.expect("get").is_none(),
            "job {id} gone"
        );
        assert!(store.job_events(id, 10).await.expect("events").is_empty());
    }
    assert!(
        store.job_get(other).await.expect("get").is_some(),
        "others stay"
    );
}

/// Retention prunes a partitioned job with all its partitions and their history;
/// partitions are never pruned (nor counted) on their own.
pub async fn prune_takes_partitions_along(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_prune", &parts(2)).await;
    for run in claim_all(store, "p_prune", 2).await {
        store
            .job_release(run.job.id, run.token, None, &Outcome::Completed)
            .await
            .expect("complete a partition");
    }
    assert_eq!(get(store, parent).await.state, JobState::Completed);
    let later = iterjob::store::now_millis() + 1_000;
    assert_eq!(
        store
            .job_prunable(JobState::Completed, later)
            .await
            .expect("count"),
        1,
        "the job, not its partitions"
    );
    assert_eq!(
        store
            .job_prune(JobState::Completed, later, 0, 10)
            .await
            .expect("prune")
            .deleted,
        1
    );
    for id in std::iter::once(parent).chain(children) {
        assert!(
            store.job_get(id).await.expect("get").is_none(),
            "job {id} gone"
        );
        assert!(store.job_events(id, 10).await.expect("events").is_empty());
    }
}

/// Pause, resume and cancel of a parent reach every child: waiting ones at once,
/// running ones by request.
pub async fn parent_actions_reach_children(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_cascade", &parts(3)).await;
    let running = claim_all(store, "p_cascade", 1).await;
    let running_id = running[0].job.id;
    let waiting: Vec<JobId> = children
        .iter()
        .copied()
        .filter(|&c| c != running_id)
        .collect();

    let paused = store.job_pause(parent).await.expect("pause parent");
    assert_eq!(paused.state, JobState::Paused);
    for &w in &waiting {
        assert_eq!(get(store, w).await.state, JobState::Paused);
    }
    let r = get(store, running_id).await;
    assert_eq!((r.state, r.pause_requested), (JobState::Running, true));
    assert!(
        claim_all(store, "p_cascade", 5).await.is_empty(),
        "nothing claimable while paused"
    );

    let resumed = store.job_resume(parent).await.expect("resume parent");
    assert_eq!(resumed.state, JobState::Running);
    for &w in &waiting {
        assert_eq!(get(store, w).await.state, JobState::Queued);
    }
    assert!(!get(store, running_id).await.pause_requested);

    // an operator pauses one partition alone; the parent still runs, and resuming
    // the parent reaches that partition
    let alone = waiting[0];
    assert_eq!(
        store
            .job_pause(alone)
            .await
            .expect("pause a partition")
            .state,
        JobState::Paused
    );
    assert_eq!(get(store, parent).await.state, JobState::Running);
    let resumed = store
        .job_resume(parent)
        .await
        .expect("resume a running parent with a paused partition");
    assert_eq!(resumed.state, JobState::Running);
    assert_eq!(get(store, alone).await.state, JobState::Queued);

    let cancelled = store.job_cancel(parent).await.expect("cancel parent");
    assert_eq!(cancelled.state, JobState::Cancelled);
    for &w in &waiting {
        assert_eq!(get(store, w).await.state, JobState::Cancelled);
    }
    let r = get(store, running_id).await;
    assert_eq!((r.state, r.cancel_requested), (JobState::Running, true));
    store
        .job_release(running_id, running[0].token, None, &Outcome::Cancelled)
        .await
        .unwrap();
    assert_eq!(get(store, parent).await.state, JobState::Cancelled);

    let retried = store
        .job_retry(parent)
        .await
        .expect("retry a cancelled parent");
    assert_eq!(
        retried.state,
        JobState::Queued,
        "running again, its partitions wait in their queue"
    );
    for &c in &children {
        assert_eq!(get(store, c).await.state, JobState::Queued);
    }
}

/// A split request marks the running partition with the most left; the running
/// worker's split writes its checkpoint and new parameters and adds a sibling, in one
/// fenced write.
pub async fn split_divides_a_running_partition(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_split", &parts(3)).await;
    let claimed = claim_all(store, "p_split", 3).await;
    let token = |id| claimed.iter().find(|c| c.job.id == id).unwrap().token;
    let (small, big, unknown) = (children[0], children[1], children[2]);
    store
        .job_checkpoint(small, token(small), &progress(10, Some(100)), LEASE)
        .await
        .unwrap();
    store
        .job_checkpoint(big, token(big), &progress(100, Some(1000)), LEASE)
        .await
        .unwrap();
    store
        .job_checkpoint(unknown, token(unknown), &progress(5, None), LEASE)
        .await
        .unwrap();
    let request = |kind: &str, min| SplitRequest {
        queues: vec![DEFAULT_QUEUE.into()],
        kinds: vec![kind.into()],
        min_remaining: min,
    };
    assert_eq!(
        store.job_request_split(&request("other", 1)).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .job_request_split(&request("p_split", 50))
            .await
            .unwrap(),
        Some(big)
    );
    assert_eq!(
        store
            .job_request_split(&request("p_split", 50))
            .await
            .unwrap(),
        Some(small)
    );
    assert_eq!(
        store
            .job_request_split(&request("p_split", 50))
            .await
            .unwrap(),
        None,
        "both already asked; the one without a total is never chosen"
    );
    let control = store.job_heartbeat(big, token(big), LEASE).await.unwrap();
    assert!(control.split_requested);
    assert!(get(store, big).await.split_requested);

    // nothing to give: the request is cleared, the checkpoint written
    let none = store
        .job_split(small, token(small), &progress(95, Some(100)), None, LEASE)
        .await
        .unwrap();
    assert_eq!(none, None);
    let s = get(store, small).await;
    assert!(!s.split_requested);
    assert_eq!(s.items_done, 95);

    let split = Split {
        keep: json!({ "part": 1, "until": 550 }),
        give: json!({ "part": 1, "from": 550 }),
    };
    let stale = store
        .job_split(
            big,
            iterjob::store::RunToken(token(big).0 ^ 1),
            &progress(101, Some(1000)),
            Some(&split),
            LEASE,
        )
        .await
        .expect_err("a stale token cannot split");
    assert!(matches!(stale, Error::LeaseLost { .. }), "{stale:?}");
    let new = store
        .job_split(
            big,
            token(big),
            &progress(101, Some(1000)),
            Some(&split),
            LEASE,
        )
        .await
        .unwrap()
        .expect("a new partition");
    let b = get(store, big).await;
    assert_eq!(b.params, split.keep);
    assert_eq!(b.items_done, 101);
    assert_eq!(b.items_total, None, "the kept part is counted again");
    assert!(!b.split_requested);
    assert_eq!(b.state, JobState::Running);
    let n = get(store, new).await;
    assert_eq!((n.parent_id, n.state), (Some(parent), JobState::Queued));
    assert_eq!(n.params, split.give);
    assert_eq!((n.priority, n.max_attempts), (3, 4));
    let listed = store.job_partitions(parent).await.unwrap();
    assert_eq!(listed.len(), 4);
    let claimed_new = claim_all(store, "p_split", 5).await;
    assert_eq!(claimed_new.len(), 1);
    assert_eq!(claimed_new[0].job.id, new);

    // a partition split while its parent is paused joins it paused
    store.job_pause(parent).await.unwrap();
    let later = store
        .job_split(
            small,
            token(small),
            &progress(96, Some(100)),
            Some(&Split {
                keep: json!({"k": 1}),
                give: json!({"g": 1}),
            }),
            LEASE,
        )
        .await
        .unwrap()
        .expect("split");
    assert_eq!(get(store, later).await.state, JobState::Paused);

    // only partitions can be split
    let plain = store
        .job_insert(&NewJob::new("p_split_plain", json!({})))
        .await
        .unwrap();
    let c = claim_all(store, "p_split_plain", 1).await;
    let err = store
        .job_split(plain, c[0].token, &progress(1, None), Some(&split), LEASE)
        .await
        .expect_err("not a partition");
    assert!(!matches!(err, Error::LeaseLost { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------
// runtime

/// A job kind for partition scenarios: walks an integer range, recording how often
/// each item was processed; items below `slow_below` sleep `slow_ms`.
#[derive(Clone, Debug, Default)]
pub struct SpanJob {
    seen: Arc<Mutex<BTreeMap<i64, u32>>>,
    /// While set, the item `fail_at` fails fatally.
    pub failing: Arc<AtomicBool>,
    policy: PartitionFailure,
}

/// Parameters of [`SpanJob`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SpanParams {
    /// The items.
    pub range: Range<i64>,
    /// Items below this are slow…
    pub slow_below: i64,
    /// …by this much each.
    pub slow_ms: u64,
    /// Every item sleeps this long.
    pub sleep_ms: u64,
    /// The item that fails while [`SpanJob::failing`] is set.
    pub fail_at: Option<i64>,
}

impl SpanJob {
    /// A kind with the default failure policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A kind whose failed partition cancels the others.
    pub fn cancelling_others() -> Self {
        SpanJob {
            policy: PartitionFailure::CancelOthers,
            ..Self::default()
        }
    }

    /// How often each item was processed.
    pub fn seen(&self) -> BTreeMap<i64, u32> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Panics unless every item of `range` was processed exactly once.
    pub fn assert_each_once(&self, range: Range<i64>) {
        let seen = self.seen();
        let missing: Vec<i64> = range
            .clone()
            .filter(|i| !seen.contains_key(i))
            .take(10)
            .collect();
        let repeated: Vec<(i64, u32)> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(i, n)| (*i, *n))
            .take(10)
            .collect();
        let outside: Vec<i64> = seen
            .keys()
            .copied()
            .filter(|i| !range.contains(i))
            .take(10)
            .collect();
        assert!(
            missing.is_empty() && repeated.is_empty() && outside.is_empty(),
            "each item of {range:?} exactly once: missing {missing:?}, repeated {repeated:?}, outside {outside:?}"
        );
    }
}

impl Job for SpanJob {
    const KIND: &'static str = "span";
    const PARTITIONABLE: bool = true;
    type Params = SpanParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &SpanParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(params.range.clone(), cursor))
    }

    async fn process(&self, ctx: &JobContext<SpanParams>, item: i64) -> Result<(), JobError> {
        let p = &ctx.params;
        if item < p.slow_below && p.slow_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.slow_ms)).await;
        } else if p.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
        }
        if p.fail_at == Some(item) && self.failing.load(Ordering::SeqCst) {
            return Err(JobError::fatal(format!("item {item} is malformed")));
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(item)
            .or_default() += 1;
        Ok(())
    }

    async fn total(&self, params: &SpanParams) -> Result<Option<u64>, JobError> {
        Ok(Some((params.range.end - params.range.start).max(0) as u64))
    }

    async fn partition(&self, params: &SpanParams, n: u32) -> Result<Vec<SpanParams>, JobError> {
        Ok(int_ranges(params.range.clone(), n)
            .into_iter()
            .map(|range| SpanParams {
                range,
                ..params.clone()
            })
            .collect())
    }

    async fn split(
        &self,
        params: &SpanParams,
        cursor: Option<&i64>,
    ) -> Result<Option<(SpanParams, SpanParams)>, JobError> {
        Ok(
            split_int_range(&params.range, cursor.copied()).map(|(keep, give)| {
                (
                    SpanParams {
                        range: keep,
                        ..params.clone()
                    },
                    SpanParams {
                        range: give,
                        ..params.clone()
                    },
                )
            }),
        )
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default().partition_failure(self.policy)
    }
}

fn partition_config() -> WorkerConfig {
    let mut c = fast_config();
    c.concurrency = 4;
    c.split_min_remaining = 20;
    c
}

async fn enqueue_span(store: &dyn Store, job: &SpanJob, params: SpanParams, n: u32) -> JobId {
    store
        .job_insert(&NewJob::of(job, &params).expect("params").partitions(n))
        .await
        .expect("enqueue")
}

async fn run_until_finished(
    store: &Arc<dyn Store>,
    job: &SpanJob,
    config: WorkerConfig,
    parent: JobId,
) -> iterjob::WorkerReport {
    let worker =
        Worker::new(Arc::clone(store), Registry::new().with(job.clone()), config).expect("config");
    let token = worker.shutdown_token();
    let watch = {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let record = get(&*store, parent).await;
                if record.state.is_finished() || tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.cancel();
        })
    };
    let report = worker.run().await.expect("worker");
    watch.await.expect("watcher");
    report
}

/// A partitioned job is split into partitions that workers walk at once; every item
/// is processed exactly once and the parent completes with its children's progress.
pub async fn partitioned_job_walks_every_item_once(store: Arc<dyn Store>) {
    let job = SpanJob::new();
    let params = SpanParams {
        range: 0..2000,
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 4).await;
    let report = run_until_finished(&store, &job, partition_config(), parent).await;
    let record = get(&*store, parent).await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    assert_eq!(report.partitioned, 1);
    assert_eq!((record.items_done, record.items_total), (2000, Some(2000)));
    let children = store.job_partitions(parent).await.unwrap();
    assert!(children.len() >= 4, "{} partitions", children.len());
    assert!(children.iter().all(|c| c.state == JobState::Completed));
    job.assert_each_once(0..2000);
}

/// Workers stopped again and again while partitions run and split: each item
/// exactly once across every partition and split.
pub async fn partitioned_job_survives_many_shutdowns(store: Arc<dyn Store>) {
    let job = SpanJob::new();
    let params = SpanParams {
        range: 0..1200,
        sleep_ms: 1,
        slow_below: 300,
        slow_ms: 3,
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 3).await;
    let mut rounds = 0;
    for round in 0..300u64 {
        let worker = Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            partition_config(),
        )
        .expect("config");
        let token = worker.shutdown_token();
        let stop = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30 + (round % 5) * 20)).await;
            token.cancel();
        });
        worker.run().await.expect("worker");
        stop.await.expect("stopper");
        rounds += 1;
        if get(&*store, parent).await.state.is_finished() {
            break;
        }
    }
    let record = get(&*store, parent).await;
    assert_eq!(
        record.state,
        JobState::Completed,
        "after {rounds} rounds: {record:?}"
    );
    assert!(
        rounds >= 3,
        "the workers were stopped several times ({rounds})"
    );
    let children = store.job_partitions(parent).await.unwrap();
    assert!(
        children.iter().map(|c| c.interruptions).sum::<u32>() >= 2,
        "partitions were interrupted"
    );
    job.assert_each_once(0..1200);
}

/// One partition is much slower than the others: once the fast ones are done, idle
/// workers split it, and the job's tail does not hang on one worker.
pub async fn dynamic_splitting_takes_over_a_slow_partition(store: Arc<dyn Store>) {
    let job = SpanJob::new();
    // the slow partition takes about 2.4 s: idle workers ask for a split once a
    // second, so at least two asks fall while it has hundreds of items left
    let params = SpanParams {
        range: 0..1600,
        slow_below: 400,
        slow_ms: 6,
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 4).await;
    let report = run_until_finished(&store, &job, partition_config(), parent).await;
    assert_eq!(get(&*store, parent).await.state, JobState::Completed);
    let children = store.job_partitions(parent).await.unwrap();
    assert!(
        children.len() > 4,
        "the slow partition was split: {} partitions, {} split requests",
        children.len(),
        report.split_requests
    );
    let slow_parts = children
        .iter()
        .filter(|c| c.params["range"]["start"].as_i64().unwrap_or(i64::MAX) < 400)
        .count();
    assert!(
        slow_parts > 1,
        "the slow range is walked by several partitions"
    );
    job.assert_each_once(0..1600);

    // and with splitting off, nothing is split
    let job = SpanJob::new();
    let params = SpanParams {
        range: 0..400,
        slow_below: 100,
        slow_ms: 2,
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 4).await;
    let mut config = partition_config();
    config.dynamic_splitting = false;
    let report = run_until_finished(&store, &job, config, parent).await;
    assert_eq!(report.split_requests, 0);
    assert_eq!(store.job_partitions(parent).await.unwrap().len(), 4);
    job.assert_each_once(0..400);
}

/// Pausing the parent of running partitions pauses them all at an item boundary;
/// resuming finishes the walk, each item once.
pub async fn parent_pause_resume_while_running(store: Arc<dyn Store>) {
    let job = SpanJob::new();
    let params = SpanParams {
        range: 0..600,
        sleep_ms: 2,
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 3).await;
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        partition_config(),
    )
    .expect("config");
    let token = worker.shutdown_token();
    let run = tokio::spawn(async move { worker.run().await });
    // wait until partitions run
    loop {
        let children = store.job_partitions(parent).await.unwrap();
        if children.iter().filter(|c| c.items_done > 0).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.job_pause(parent).await.unwrap().state,
        JobState::Paused
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let children = store.job_partitions(parent).await.unwrap();
        if children
            .iter()
            .all(|c| c.state == JobState::Paused || c.state.is_finished())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not pause: {children:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let paused_at = get(&*store, parent).await.items_done;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(&*store, parent).await.items_done,
        paused_at,
        "nothing moves while paused"
    );
    let resumed = store.job_resume(parent).await.unwrap().state;
    assert!(
        matches!(resumed, JobState::Running | JobState::Queued),
        "resumed, its partitions run or wait to: {resumed}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !get(&*store, parent).await.state.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not finish after resume"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    run.await.expect("join").expect("worker");
    assert_eq!(get(&*store, parent).await.state, JobState::Completed);
    job.assert_each_once(0..600);
}

/// A partition that fails for good: by default the others finish and the parent
/// fails naming it; retrying the parent (after the fix) resumes it from its
/// checkpoint. With `CancelOthers`, the others are cancelled.
pub async fn failed_partition_fails_parent_and_retry_resumes(store: Arc<dyn Store>) {
    let job = SpanJob::new();
    job.failing.store(true, Ordering::SeqCst);
    let params = SpanParams {
        range: 0..800,
        fail_at: Some(150),
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params.clone(), 4).await;
    run_until_finished(&store, &job, partition_config(), parent).await;
    let record = get(&*store, parent).await;
    assert_eq!(record.state, JobState::Failed);
    let error = record.last_error.clone().unwrap_or_default();
    assert!(error.contains("item 150 is malformed"), "{error}");
    let children = store.job_partitions(parent).await.unwrap();
    assert_eq!(
        children
            .iter()
            .filter(|c| c.state == JobState::Failed)
            .count(),
        1
    );
    assert!(
        children
            .iter()
            .filter(|c| c.state == JobState::Completed)
            .count()
            >= 3,
        "the other partitions went on"
    );

    job.failing.store(false, Ordering::SeqCst);
    store.job_retry(parent).await.expect("retry");
    run_until_finished(&store, &job, partition_config(), parent).await;
    assert_eq!(get(&*store, parent).await.state, JobState::Completed);
    job.assert_each_once(0..800);

    let job = SpanJob::cancelling_others();
    job.failing.store(true, Ordering::SeqCst);
    let params = SpanParams {
        range: 0..4000,
        sleep_ms: 1,
        fail_at: Some(5),
        ..Default::default()
    };
    let parent = enqueue_span(&*store, &job, params, 4).await;
    let mut config = partition_config();
    config.dynamic_splitting = false;
    run_until_finished(&store, &job, config, parent).await;
    let record = get(&*store, parent).await;
    assert_eq!(record.state, JobState::Failed, "{record:?}");
    let children = store.job_partitions(parent).await.unwrap();
    assert!(
        children.iter().any(|c| c.state == JobState::Cancelled),
        "the others were cancelled: {:?}",
        children.iter().map(|c| c.state).collect::<Vec<_>>()
    );
    assert!(record.items_done < 4000, "they stopped early");
}

/// A kind without `Job::partition`, enqueued with partitions, fails at once with an
/// error that says what to do; the worker goes on with other jobs.
pub async fn partitioning_a_kind_that_cannot_fails_clearly(store: Arc<dyn Store>) {
    let job = crate::scenarios::CountingJob::new();
    let params = crate::scenarios::CountingParams {
        n: 10,
        ..Default::default()
    };
    let bad = store
        .job_insert(&NewJob::of(&job, &params).expect("params").partitions(3))
        .await
        .expect("enqueue");
    let good = store
        .job_insert(&NewJob::of(&job, &params).expect("params"))
        .await
        .expect("enqueue");
    let worker = Worker::new(
        Arc::clone(&store),
        Registry::new().with(job.clone()),
        fast_config(),
    )
    .expect("config");
    worker.run_until_idle().await.expect("worker");
    let bad = get(&*store, bad).await;
    assert_eq!(bad.state, JobState::Failed);
    let error = bad.last_error.unwrap_or_default();
    assert!(
        error.contains("cannot be split into partitions") && error.contains("Job::partition"),
        "{error}"
    );
    assert!(store.job_partitions(bad.id).await.unwrap().is_empty());
    assert_eq!(get(&*store, good).await.state, JobState::Completed);
}

/// Batched releases (`Store::job_release_many`, as the worker's release batcher writes
/// them) keep every rule of single releases: the history event of an interruption,
/// and the parent's end when its last partition completes in a batch.
pub async fn batched_releases_keep_history_and_finish_parents(store: Arc<dyn Store>) {
    let store = &*store;
    let (parent, children) = planned(store, "p_batch", &parts(2)).await;
    let claimed = claim_all(store, "p_batch", 2).await;
    let token = |id| claimed.iter().find(|c| c.job.id == id).unwrap().token;
    let release = |id, token, outcome| iterjob::store::Release {
        id,
        token,
        progress: Some(progress(5, Some(10))),
        outcome,
    };
    let results = store
        .job_release_many(&[
            release(children[0], token(children[0]), Outcome::Completed),
            release(
                children[1],
                token(children[1]),
                Outcome::Interrupted {
                    reason: iterjob::InterruptReason::TimeSlice,
                    run_at: iterjob::store::now_millis() - 10,
                    error: None,
                },
            ),
        ])
        .await
        .expect("job_release_many");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let events = store.job_events(children[1], 10).await.expect("events");
    assert_eq!(
        events.len(),
        1,
        "the interruption is in the history: {events:?}"
    );
    assert!(
        store.job_events(children[0], 10).await.unwrap().is_empty(),
        "completion is not"
    );
    assert_eq!(
        get(store, parent).await.state,
        JobState::Queued,
        "one partition completed, the other waits: the parent shows queued"
    );

    let again = claim_all(store, "p_batch", 2).await;
    assert_eq!(again.len(), 1);
    let other = store
        .job_insert(&NewJob::new("p_batch_other", json!({})))
        .await
        .unwrap();
    let other_run = claim_all(store, "p_batch_other", 1).await;
    let results = store
        .job_release_many(&[
            release(children[1], again[0].token, Outcome::Completed),
            release(other, other_run[0].token, Outcome::Completed),
        ])
        .await
        .expect("job_release_many");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let record = get(store, parent).await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    assert_eq!(record.items_done, 10);
}
