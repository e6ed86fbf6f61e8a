//! The store conformance suite: the behaviour every [`Store`] must have, as runnable
//! scenarios.
//!
//! Each scenario is a public async function taking a fresh, empty, migrated store as
//! an `Arc<dyn Store>` (shared, because some scenarios claim from many tasks at
//! once). A scenario panics with a message naming what went wrong.
//!
//! A store crate runs the whole suite with [`store_conformance!`](crate::store_conformance),
//! once, at the top level of one integration-test file:
//!
//! ```ignore
//! // crates/my-store/tests/conformance.rs
//! iterjob_testkit::store_conformance!(async { my_store::MyStore::open_temp().await.unwrap() });
//! ```
//!
//! The argument is an expression that is a future (typically an `async` block)
//! resolving to a store **by value**: any `S: Store`, not an `Arc`. It is evaluated
//! once per scenario, inside that scenario's runtime, so it must produce a new, empty
//! store each time (for example a temporary database). The macro calls
//! [`Store::migrate`] on it once more (migrations are idempotent) and shares it as an
//! `Arc<dyn Store>`.
//!
//! The macro expands to one plain `#[test]` function per scenario, named after the
//! scenario. Each builds its own multi-threaded tokio runtime (through
//! [`run_scenario`]), so the downstream crate needs neither tokio nor its macros as a
//! dev-dependency, and a scenario that hangs fails after [`SCENARIO_TIMEOUT`] instead
//! of blocking the test run.
//!
//! Timing: scenarios about lease expiry use leases of 100 ms and sleep 300 ms; no
//! scenario waits for a scheduled `run_at`, they schedule in the past or far in the
//! future instead. Timestamps are compared with the test's clock with
//! [`CLOCK_SLACK_MS`] of slack, for stores whose clock is a database server's.
//!
//! Scenarios (see each function's docs):
//!
//! * inserting: [`insert_get_roundtrip`], [`insert_many_returns_ids_in_order`],
//!   [`insert_many_large_mixed_batch_keeps_each_job`], [`unique_key_dedup`], [`unique_key_freed_when_job_finishes`]
//! * claiming: [`claim_marks_job_running`], [`claim_orders_by_priority_then_run_at_then_id`],
//!   [`claim_skips_jobs_scheduled_later`], [`claim_filters_by_kind_and_queue`],
//!   [`claim_respects_limit`], [`concurrent_claims_are_disjoint`]
//! * running: [`heartbeat_extends_lease`], [`checkpoint_writes_progress`],
//!   [`wrong_token_is_rejected`]
//! * crashes: [`lease_expiry_requeues_and_fences_stale_worker`],
//!   [`crash_loop_fails_job`], [`crashes_use_up_attempts`],
//!   [`checkpoint_progress_resets_crashes`]
//! * releasing: [`release_completed`], [`release_interrupted`], [`release_paused`],
//!   [`release_cancelled`], [`release_retry`], [`release_failed`],
//!   [`release_without_progress_keeps_cursor`], [`release_ends_the_run`]
//! * operators: [`pause_and_resume_waiting_jobs`], [`pause_running_job_is_requested`],
//!   [`cancel_waiting_jobs`], [`cancel_running_job_is_requested`],
//!   [`finished_jobs_reject_pause_resume_cancel`], [`resume_requires_paused`],
//!   [`retry_keeps_cursor_and_resets_attempts`], [`retry_cancelled_job`],
//!   [`retry_requires_failed_or_cancelled`]
//! * reading: [`list_newest_first_with_filters`], [`list_pagination`],
//!   [`list_default_limit`], [`count_by_state_covers_every_state`],
//!   [`missing_jobs`]
//! * rate limits: [`rate_reservations_add_up`], [`rate_keys_are_independent`],
//!   [`rate_wait_grows_as_reservations_pile_up`], [`rate_idle_bucket_banks_nothing`].
//!   These pin the arithmetic, which the trait's default (in-process buckets) gets
//!   right too; that the buckets are shared between processes is for the store's own
//!   tests to show (two pools on one database share a bucket, as the SQLite and
//!   PostgreSQL stores' `rate_buckets_are_shared_*` tests do).
//! * history: [`job_events_record_history`]

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use iterjob::Error;
use iterjob::store::{
    ClaimRequest, Claimed, Control, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, InterruptReason, JobEvent,
    JobEventKind, JobFilter, JobId, JobRecord, JobState, Millis, NewJob, Outcome, Progress,
    Release, Rescued, RunToken, Store, now_millis,
};
use serde_json::{Value, json};

/// How long one scenario may take before it fails as hung.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// Slack allowed between the store's clock and the test's when comparing timestamps.
pub const CLOCK_SLACK_MS: Millis = 1_000;

/// A lease long enough never to expire during a scenario.
const LONG_LEASE: Duration = Duration::from_secs(60);

/// A lease short enough to expire within a scenario.
const SHORT_LEASE: Duration = Duration::from_millis(100);

/// How long to sleep for a [`SHORT_LEASE`] to have expired.
const EXPIRY_WAIT: Duration = Duration::from_millis(300);

/// An hour, in milliseconds: "far in the future" for scheduling.
const HOUR_MS: Millis = 3_600_000;

/// Runs the whole conformance suite against a store: one `#[test]` per scenario.
///
/// `$make` is an expression evaluating to a future of a fresh store (`S: Store`, by
/// value), typically an `async` block; it is evaluated once per scenario. See the
/// [`conformance`](crate::conformance) module docs.
///
/// ```ignore
/// iterjob_testkit::store_conformance!(async { iterjob::store::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr $(,)?) => {
        $crate::__store_conformance_tests! {
            ($make)
            insert_get_roundtrip,
            insert_many_returns_ids_in_order,
            insert_many_large_mixed_batch_keeps_each_job,
            unique_key_dedup,
            unique_key_freed_when_job_finishes,
            claim_marks_job_running,
            claim_orders_by_priority_then_run_at_then_id,
            claim_skips_jobs_scheduled_later,
            claim_filters_by_kind_and_queue,
            claim_respects_limit,
            concurrent_claims_are_disjoint,
            heartbeat_extends_lease,
            checkpoint_writes_progress,
            wrong_token_is_rejected,
            lease_expiry_requeues_and_fences_stale_worker,
            crash_loop_fails_job,
            crashes_use_up_attempts,
            checkpoint_progress_resets_crashes,
            release_completed,
            release_interrupted,
            release_paused,
            release_cancelled,
            release_retry,
            release_failed,
            note_failure_keeps_where_the_run_failed,
            release_without_progress_keeps_cursor,
            release_ends_the_run,
            release_many_mixed_outcomes,
            release_many_fences_each_release,
            pause_and_resume_waiting_jobs,
            pause_running_job_is_requested,
            cancel_waiting_jobs,
            cancel_running_job_is_requested,
            finished_jobs_reject_pause_resume_cancel,
            resume_requires_paused,
            retry_keeps_cursor_and_resets_attempts,
            retry_cancelled_job,
            retry_requires_failed_or_cancelled,
            delete_finished_and_paused_jobs_with_their_history,
            prune_deletes_finished_jobs_in_batches,
            prune_takes_partitions_along,
            list_newest_first_with_filters,
            list_pagination,
            list_default_limit,
            count_by_state_covers_every_state,
            workers_are_seen_replaced_and_forgotten,
            missing_jobs,
            partition_creates_children,
            top_level_counts_count_a_partitioned_job_once,
            parent_progress_sums_children,
            parent_finishes_with_its_children,
            parent_actions_reach_children,
            delete_takes_partitions_along,
            split_divides_a_running_partition,
            batched_releases_keep_history_and_finish_parents,
            rate_reservations_add_up,
            rate_keys_are_independent,
            rate_wait_grows_as_reservations_pile_up,
            rate_idle_bucket_banks_nothing,
            job_events_record_history,
            paused_queue_is_not_claimed,
            queue_stats_count_and_estimate,
            leases_have_one_holder,
            schedule_ticks_are_taken_once,
            throttle_switches_are_kept_by_scope,
        }
    };
}

/// Expands to the scenario tests; use [`store_conformance!`](crate::store_conformance).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    (($make:expr) $($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                $crate::conformance::run_scenario(::core::stringify!($scenario), async {
                    let store = $crate::conformance::share($make.await).await;
                    $crate::conformance::$scenario(store).await;
                });
            }
        )*
    };
}

/// Runs one scenario on a fresh multi-threaded tokio runtime, failing it if it takes
/// longer than [`SCENARIO_TIMEOUT`]. Used by [`store_conformance!`](crate::store_conformance).
///
/// # Panics
/// If the runtime cannot be built, the scenario panics, or it times out.
pub fn run_scenario<F>(name: &str, scenario: F)
where
    F: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build a tokio runtime for the conformance scenario");
    runtime.block_on(async {
        if tokio::time::timeout(SCENARIO_TIMEOUT, scenario)
            .await
            .is_err()
        {
            panic!("conformance scenario `{name}` did not finish within {SCENARIO_TIMEOUT:?}");
        }
    });
}

/// Migrates a fresh store (again: migrations are idempotent) and shares it as an
/// `Arc<dyn Store>`. Used by [`store_conformance!`](crate::store_conformance).
///
/// # Panics
/// If `migrate` fails.
pub async fn share<S: Store>(store: S) -> Arc<dyn Store> {
    store
        .migrate()
        .await
        .expect("Store::migrate on the fresh store (it must be idempotent)");
    Arc::new(store)
}

pub use crate::backpressure::throttle_switches_are_kept_by_scope;
pub use crate::schedules::schedule_ticks_are_taken_once;

pub use crate::queues::{
    leases_have_one_holder, paused_queue_is_not_claimed, queue_stats_count_and_estimate,
};

pub use crate::partitions::{
    batched_releases_keep_history_and_finish_parents, delete_takes_partitions_along,
    parent_actions_reach_children, parent_finishes_with_its_children,
    parent_progress_sums_children, partition_creates_children, prune_takes_partitions_along,
    split_divides_a_running_partition, top_level_counts_count_a_partitioned_job_once,
};

// ---------------------------------------------------------------------------------
// helpers

fn new_job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({ "kind": kind }))
}

async fn insert(store: &dyn Store, job: NewJob) -> JobId {
    let ids = store
        .job_insert_many(std::slice::from_ref(&job))
        .await
        .expect("job_insert_many");
    assert_eq!(ids.len(), 1, "job_insert_many of one job returns one id");
    ids[0]
}

async fn get(store: &dyn Store, id: JobId) -> JobRecord {
    store
        .job_get(id)
        .await
        .expect("job_get")
        .unwrap_or_else(|| panic!("job {id} should exist"))
}

fn request(kinds: &[&str], queues: &[&str], limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        worker_id: "conformance-worker".to_string(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        limit,
        lease,
    }
}

async fn claim(store: &dyn Store, kinds: &[&str], limit: usize) -> Vec<Claimed> {
    store
        .job_claim(&request(kinds, &[DEFAULT_QUEUE], limit, LONG_LEASE))
        .await
        .expect("job_claim")
}

/// Claims exactly one job of `kind` (from the default queue) and checks it is `id`.
async fn claim_id(store: &dyn Store, kind: &str, id: JobId, lease: Duration) -> Claimed {
    let mut claimed = store
        .job_claim(&request(&[kind], &[DEFAULT_QUEUE], 10, lease))
        .await
        .expect("job_claim");
    assert_eq!(
        claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        vec![id],
        "claiming kind `{kind}` should return exactly job {id}"
    );
    claimed.remove(0)
}

async fn claim_ids(store: &dyn Store, kinds: &[&str], queues: &[&str]) -> BTreeSet<JobId> {
    store
        .job_claim(&request(kinds, queues, 100, LONG_LEASE))
        .await
        .expect("job_claim")
        .into_iter()
        .map(|c| c.job.id)
        .collect()
}

async fn release(
    store: &dyn Store,
    claimed: &Claimed,
    progress: Option<&Progress>,
    outcome: Outcome,
) {
    store
        .job_release(claimed.job.id, claimed.token, progress, &outcome)
        .await
        .unwrap_or_else(|e| panic!("job_release({outcome:?}) of job {}: {e}", claimed.job.id));
}

fn progress(cursor: Value, items_done: u64) -> Progress {
    Progress {
        cursor: Some(cursor),
        items_done,
        items_total: Some(1_000),
        running_ms: items_done * 10,
    }
}

fn other_token(token: RunToken) -> RunToken {
    RunToken(token.0.wrapping_add(1))
}

fn assert_recent(at: Option<Millis>, before: Millis, what: &str) {
    let at = at.unwrap_or_else(|| panic!("{what} should be set"));
    let after = now_millis();
    assert!(
        at >= before - CLOCK_SLACK_MS && at <= after + CLOCK_SLACK_MS,
        "{what} = {at} should lie between {before} and {after}"
    );
}

fn assert_lease_lost<T: Debug>(result: iterjob::Result<T>, id: JobId, what: &str) {
    match result {
        Err(Error::LeaseLost { job }) => assert_eq!(job, id, "{what}: LeaseLost names the job"),
        other => panic!("{what} on job {id} should fail with LeaseLost, got {other:?}"),
    }
}

fn assert_invalid<T: Debug>(result: iterjob::Result<T>, id: JobId, state: JobState, action: &str) {
    match result {
        Err(Error::InvalidTransition {
            job,
            state: got_state,
            action: got_action,
            hint,
        }) => {
            assert_eq!(job, id, "InvalidTransition names the job");
            assert_eq!(
                got_state, state,
                "InvalidTransition names the current state"
            );
            assert_eq!(got_action, action, "InvalidTransition names the action");
            assert!(!hint.is_empty(), "InvalidTransition carries a hint");
        }
        other => {
            panic!("{action} of {state} job {id} should fail with InvalidTransition, got {other:?}")
        }
    }
}

fn assert_not_found<T: Debug>(result: iterjob::Result<T>, id: JobId, what: &str) {
    match result {
        Err(Error::JobNotFound(job)) => assert_eq!(job, id, "{what}: JobNotFound names the job"),
        other => panic!("{what} of missing job {id} should fail with JobNotFound, got {other:?}"),
    }
}

fn assert_run_cleared(job: &JobRecord) {
    assert_eq!(
        job.worker_id, None,
        "job {} keeps no worker after its run",
        job.id
    );
    assert_eq!(
        job.lease_expires_at, None,
        "job {} keeps no lease after its run",
        job.id
    );
}

/// Crashes a running job: lets its short lease expire and rescues it.
async fn crash(store: &dyn Store, max_crashes: u32) -> Vec<Rescued> {
    tokio::time::sleep(EXPIRY_WAIT).await;
    store
        .job_rescue_expired(max_crashes)
        .await
        .expect("job_rescue_expired")
}

// ---------------------------------------------------------------------------------
// inserting

/// Every field of a [`NewJob`] comes back from `job_get`, and a new job starts with
/// zeroed counters and no run data.
pub async fn insert_get_roundtrip(store: Arc<dyn Store>) {
    let store = &*store;
    let before = now_millis();
    let params = json!({
        "tenant": "acme",
        "ids": [1, 2, 3],
        "nested": { "flag": true, "note": "ünïcødé ✓ \"quoted\"", "none": null },
        "big": 9_007_199_254_740_993_u64,
        "negative": -42,
    });
    let cursor = json!({ "after": "k42", "page": 7 });
    let full = NewJob {
        kind: "roundtrip".to_string(),
        params: params.clone(),
        queue: "q-roundtrip".to_string(),
        priority: -7,
        run_at: Some(before - 5_000),
        max_attempts: 3,
        unique_key: Some("rt-key".to_string()),
        cursor: Some(cursor.clone()),
        partitions: Some(6),
        trace_context: Some(TRACEPARENT.to_string()),
    };
    let plain = NewJob::new("plain", Value::Null).trace_context(None);
    let ids = store
        .job_insert_many(&[full, plain])
        .await
        .expect("job_insert_many");
    assert_eq!(ids.len(), 2);

    let job = get(store, ids[0]).await;
    assert_eq!(job.id, ids[0]);
    assert_eq!(job.kind, "roundtrip");
    assert_eq!(job.queue, "q-roundtrip");
    assert_eq!(job.priority, -7);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.params, params);
    assert_eq!(job.cursor, Some(cursor));
    assert_eq!(job.items_done, 0);
    assert_eq!(job.items_total, None);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.interruptions, 0);
    assert_eq!(job.crashes, 0);
    assert_eq!(job.runs, 0);
    assert_eq!(job.last_error, None);
    assert_eq!(job.unique_key.as_deref(), Some("rt-key"));
    assert_recent(Some(job.created_at), before, "created_at");
    assert_eq!(job.run_at, before - 5_000, "run_at as given");
    assert_eq!(job.started_at, None);
    assert_eq!(job.finished_at, None);
    assert_eq!(job.checkpointed_at, None);
    assert_eq!(job.running_ms, 0);
    assert_eq!(job.worker_id, None);
    assert_eq!(job.lease_expires_at, None);
    assert!(!job.pause_requested);
    assert!(!job.cancel_requested);
    assert_eq!(job.partitions, Some(6));
    assert_eq!(job.parent_id, None);
    assert!(!job.split_requested);
    assert_eq!(job.trace_context.as_deref(), Some(TRACEPARENT));

    let job = get(store, ids[1]).await;
    assert_eq!(job.trace_context, None);
    assert_eq!(job.kind, "plain");
    assert_eq!(job.partitions, None);
    assert_eq!(job.params, Value::Null, "null parameters round-trip");
    assert_eq!(job.queue, DEFAULT_QUEUE);
    assert_eq!(job.priority, 0);
    assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
    assert_eq!(job.unique_key, None);
    assert_eq!(job.cursor, None);
    assert_recent(Some(job.run_at), before, "run_at defaults to now");
}

/// A W3C `traceparent`, as an enqueuer inside a trace records it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `job_insert_many` returns one distinct id per job, in order (ascending: later jobs
/// are newer), and an empty batch inserts nothing.
pub async fn insert_many_returns_ids_in_order(store: Arc<dyn Store>) {
    let store = &*store;
    assert_eq!(
        store.job_insert_many(&[]).await.expect("empty insert"),
        Vec::<JobId>::new()
    );
    let jobs: Vec<NewJob> = (0..5)
        .map(|i| NewJob::new(format!("kind-{i}"), json!({ "i": i })))
        .collect();
    let ids = store.job_insert_many(&jobs).await.expect("job_insert_many");
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let job = get(store, *id).await;
        assert_eq!(job.kind, format!("kind-{i}"), "id {id} belongs to job {i}");
        assert_eq!(job.params, json!({ "i": i }));
    }
    let more = insert(store, new_job("later")).await;
    assert!(more > ids[4], "a later insert gets a higher id");
}

/// A batch larger than any store's statement (2,500 jobs) with a unique key every
/// 7th job (one of them repeated) keeps every job's fields with its own id, in order:
/// stores that insert many rows per statement must map ids back exactly.
pub async fn insert_many_large_mixed_batch_keeps_each_job(store: Arc<dyn Store>) {
    let store = &*store;
    let before = now_millis();
    let job = |i: usize| {
        let mut job = NewJob::new(
            format!("bulk-{}", i % 3),
            json!({ "i": i, "s": "x".repeat(i % 5) }),
        )
        .queue(format!("q{}", i % 4))
        .priority((i % 9) as i32 - 4)
        .max_attempts(1 + (i % 6) as u32);
        if i.is_multiple_of(5) {
            job = job.run_at(before - 1_000 - i as i64);
        }
        if i.is_multiple_of(11) {
            job.cursor = Some(json!([i, "after"]));
        }
        if i.is_multiple_of(13) {
            job.partitions = Some(2 + (i % 3) as u32);
        }
        if i.is_multiple_of(7) {
            // job 14 repeats job 7's key: the same id comes back
            job = job.unique_key(format!("bulk-key-{}", if i == 14 { 7 } else { i }));
        }
        job
    };
    let jobs: Vec<NewJob> = (0..2_500).map(job).collect();
    let ids = store.job_insert_many(&jobs).await.expect("job_insert_many");
    assert_eq!(ids.len(), jobs.len());
    assert_eq!(ids[14], ids[7], "a key repeated within the batch");
    let mut seen = BTreeSet::new();
    for (i, (id, job)) in ids.iter().zip(&jobs).enumerate() {
        if i == 14 {
            continue;
        }
        assert!(seen.insert(*id), "id {id} given twice (job {i})");
        let got = get(store, *id).await;
        assert_eq!(got.kind, job.kind, "job {i} (id {id})");
        assert_eq!(got.params, job.params, "job {i} (id {id})");
        assert_eq!(got.queue, job.queue, "job {i}");
        assert_eq!(got.priority, job.priority, "job {i}");
        assert_eq!(got.max_attempts, job.max_attempts, "job {i}");
        assert_eq!(got.cursor, job.cursor, "job {i}");
        assert_eq!(got.partitions, job.partitions, "job {i}");
        assert_eq!(got.unique_key, job.unique_key, "job {i}");
        assert_eq!(got.state, JobState::Queued, "job {i}");
        match job.run_at {
            Some(at) => assert_eq!(got.run_at, at, "job {i}: run_at as given"),
            None => assert_recent(Some(got.run_at), before, "run_at defaults to now"),
        }
    }
    let in_order: Vec<JobId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 14)
        .map(|(_, id)| *id)
        .collect();
    assert!(
        in_order.windows(2).all(|w| w[0] < w[1]),
        "ids ascend in the batch's order"
    );
}

/// A job whose unique key matches an unfinished job returns that job's id (the first
/// job wins, whatever the kind), also within one batch; jobs without a key are never
/// deduplicated.
pub async fn unique_key_dedup(store: Arc<dyn Store>) {
    let store = &*store;
    let first = insert(store, new_job("a").unique_key("k1")).await;
    let again = insert(
        store,
        NewJob::new("b", json!({ "other": true })).unique_key("k1"),
    )
    .await;
    assert_eq!(
        again, first,
        "duplicate unique key returns the existing job"
    );
    assert_eq!(
        get(store, first).await.params,
        json!({ "kind": "a" }),
        "first job wins"
    );

    let ids = store
        .job_insert_many(&[
            new_job("a").unique_key("k2"),
            new_job("a").unique_key("k2"),
            new_job("a"),
            new_job("a"),
            new_job("a").unique_key("k1"),
            new_job("a").unique_key("k3"),
        ])
        .await
        .expect("job_insert_many");
    assert_eq!(ids[0], ids[1], "duplicate key within one batch: {ids:?}");
    assert_ne!(ids[2], ids[3], "jobs without a key are never deduplicated");
    assert_eq!(ids[4], first, "key of an earlier batch: {ids:?}");
    let distinct: BTreeSet<JobId> = [first, ids[0], ids[2], ids[3], ids[5]].into();
    assert_eq!(
        distinct.len(),
        5,
        "different keys give different jobs: {ids:?}"
    );

    let all = store
        .job_list(&JobFilter::default())
        .await
        .expect("job_list");
    assert_eq!(all.len(), 5, "only five jobs were created");
}

/// A unique key is held while its job is queued, running, paused or retrying, and
/// freed once it completes, fails or is cancelled: enqueueing again creates a new job.
pub async fn unique_key_freed_when_job_finishes(store: Arc<dyn Store>) {
    let store = &*store;
    let key_job = || new_job("u").unique_key("key");

    let first = insert(store, key_job()).await;
    let claimed = claim_id(store, "u", first, LONG_LEASE).await;
    assert_eq!(insert(store, key_job()).await, first, "held while running");
    release(store, &claimed, None, Outcome::Completed).await;
    let second = insert(store, key_job()).await;
    assert_ne!(second, first, "freed when completed");
    assert_eq!(get(store, second).await.state, JobState::Queued);

    store.job_pause(second).await.expect("pause");
    assert_eq!(insert(store, key_job()).await, second, "held while paused");
    store.job_cancel(second).await.expect("cancel");
    let third = insert(store, key_job()).await;
    assert!(third != first && third != second, "freed when cancelled");

    let claimed = claim_id(store, "u", third, LONG_LEASE).await;
    release(
        store,
        &claimed,
        None,
        Outcome::Retry {
            error: "boom".into(),
            run_at: now_millis() + HOUR_MS,
        },
    )
    .await;
    assert_eq!(insert(store, key_job()).await, third, "held while retrying");
    store
        .job_resume(third)
        .await
        .expect_err("retrying job is not paused");
    store.job_pause(third).await.expect("pause retrying");
    store.job_resume(third).await.expect("resume");
    let claimed = claim_id(store, "u", third, LONG_LEASE).await;
    release(
        store,
        &claimed,
        None,
        Outcome::Failed {
            error: "fatal".into(),
        },
    )
    .await;
    let fourth = insert(store, key_job()).await;
    assert!(
        ![first, second, third].contains(&fourth),
        "freed when failed"
    );
}

// ---------------------------------------------------------------------------------
// claiming

/// A claimed job is `running`, with `runs` counted, `started_at` set on the first run
/// only, the worker id, and a lease of the requested length; `job_get` agrees with the
/// returned record, and each run gets a new token.
pub async fn claim_marks_job_running(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("c")).await;
    let before = now_millis();
    let mut request = request(&["c"], &[DEFAULT_QUEUE], 5, Duration::from_secs(30));
    request.worker_id = "host-a:123:xyz".to_string();
    let claimed = store.job_claim(&request).await.expect("job_claim");
    assert_eq!(claimed.len(), 1);
    let first = &claimed[0];
    let job = &first.job;
    assert_eq!(job.id, id);
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.runs, 1);
    assert_recent(job.started_at, before, "started_at");
    assert_eq!(job.worker_id.as_deref(), Some("host-a:123:xyz"));
    let lease = job.lease_expires_at.expect("lease_expires_at set");
    assert!(
        lease >= before + 30_000 - CLOCK_SLACK_MS
            && lease <= now_millis() + 30_000 + CLOCK_SLACK_MS,
        "lease_expires_at {lease} should be about now + 30 s"
    );
    assert_eq!(
        &get(store, id).await,
        job,
        "job_get agrees with the claimed record"
    );
    assert!(
        claim(store, &["c"], 5).await.is_empty(),
        "a running job is not claimable"
    );

    release(
        store,
        first,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::Shutdown,
            run_at: now_millis() - 1,
            error: None,
        },
    )
    .await;
    let second = claim_id(store, "c", id, LONG_LEASE).await;
    assert_eq!(second.job.runs, 2);
    assert_eq!(
        second.job.started_at, job.started_at,
        "started_at keeps the first run's time"
    );
    assert_ne!(second.token, first.token, "each run gets a fresh token");
}

/// Inserts six due jobs of `kind` and returns their ids in the order they must be
/// claimed: priority descending, then `run_at` ascending, then id ascending.
async fn insert_ordered_jobs(store: &dyn Store, kind: &str) -> Vec<JobId> {
    let now = now_millis();
    let a = insert(store, new_job(kind).priority(0).run_at(now - 3_000)).await;
    let b = insert(store, new_job(kind).priority(5).run_at(now - 1_000)).await;
    let c = insert(store, new_job(kind).priority(5).run_at(now - 2_000)).await;
    let d = insert(store, new_job(kind).priority(0).run_at(now - 3_000)).await;
    let e = insert(store, new_job(kind).priority(-1).run_at(now - 10_000)).await;
    let f = insert(store, new_job(kind).priority(0).run_at(now - 4_000)).await;
    vec![c, b, f, a, d, e]
}

/// Claims take the highest priority first, then the oldest `run_at`, then the lowest
/// id; a claim of `limit` jobs takes the first `limit` in that order.
pub async fn claim_orders_by_priority_then_run_at_then_id(store: Arc<dyn Store>) {
    let store = &*store;
    let expected = insert_ordered_jobs(store, "one").await;
    let mut order = Vec::new();
    for _ in 0..expected.len() {
        let claimed = claim(store, &["one"], 1).await;
        assert_eq!(claimed.len(), 1, "limit 1 claims one job");
        order.push(claimed[0].job.id);
    }
    assert_eq!(
        order, expected,
        "claim order: priority desc, run_at asc, id asc"
    );
    assert!(claim(store, &["one"], 1).await.is_empty());

    let expected = insert_ordered_jobs(store, "batch").await;
    let batch: BTreeSet<JobId> = claim(store, &["batch"], 4)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    let head: BTreeSet<JobId> = expected[..4].iter().copied().collect();
    assert_eq!(batch, head, "limit 4 takes the first four in claim order");
    let rest: BTreeSet<JobId> = claim(store, &["batch"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    let tail: BTreeSet<JobId> = expected[4..].iter().copied().collect();
    assert_eq!(rest, tail, "the next claim takes the rest");
}

/// Jobs scheduled later (queued, retrying or interrupted with a future `run_at`) are
/// not claimable; jobs whose `run_at` has passed are.
pub async fn claim_skips_jobs_scheduled_later(store: Arc<dyn Store>) {
    let store = &*store;
    let now = now_millis();
    let later = insert(store, new_job("s").run_at(now + HOUR_MS)).await;
    let due = insert(store, new_job("s").run_at(now - 1_000)).await;
    let claimed = claim(store, &["s"], 10).await;
    assert_eq!(
        claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        vec![due],
        "only the due job is claimable"
    );
    assert_eq!(get(store, later).await.state, JobState::Queued);

    release(
        store,
        &claimed[0],
        None,
        Outcome::Retry {
            error: "later".into(),
            run_at: now_millis() + HOUR_MS,
        },
    )
    .await;
    assert!(
        claim(store, &["s"], 10).await.is_empty(),
        "retrying until run_at"
    );

    let interrupted = insert(store, new_job("t")).await;
    let claimed = claim_id(store, "t", interrupted, LONG_LEASE).await;
    release(
        store,
        &claimed,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::Throttled,
            run_at: now_millis() + HOUR_MS,
            error: None,
        },
    )
    .await;
    assert!(
        claim(store, &["t"], 10).await.is_empty(),
        "backing off until run_at"
    );
}

/// A claim takes only jobs of the kinds and queues asked for; an empty list of kinds
/// or of queues claims nothing.
pub async fn claim_filters_by_kind_and_queue(store: Arc<dyn Store>) {
    let store = &*store;
    let a1 = insert(store, new_job("a").queue("q1")).await;
    let b1 = insert(store, new_job("b").queue("q1")).await;
    let a2 = insert(store, new_job("a").queue("q2")).await;
    let c3 = insert(store, new_job("c").queue("q3")).await;
    let a3 = insert(store, new_job("a").queue("q3")).await;

    assert!(
        claim_ids(store, &[], &["q1", "q2", "q3"]).await.is_empty(),
        "no kinds, no jobs"
    );
    assert!(
        claim_ids(store, &["a", "b", "c"], &[]).await.is_empty(),
        "no queues, no jobs"
    );
    assert!(
        claim_ids(store, &["zzz"], &["q1"]).await.is_empty(),
        "unknown kind"
    );
    assert!(
        claim_ids(store, &["a"], &["nowhere"]).await.is_empty(),
        "unknown queue"
    );

    assert_eq!(
        claim_ids(store, &["a"], &["q1", "q2"]).await,
        BTreeSet::from([a1, a2])
    );
    assert_eq!(
        claim_ids(store, &["b", "c"], &["q3"]).await,
        BTreeSet::from([c3])
    );
    assert_eq!(
        claim_ids(store, &["a", "b", "c"], &["q1", "q2", "q3"]).await,
        BTreeSet::from([b1, a3])
    );
}

/// A claim returns at most `limit` jobs; `limit` 0 claims nothing.
pub async fn claim_respects_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let jobs: Vec<NewJob> = (0..7).map(|_| new_job("l")).collect();
    store.job_insert_many(&jobs).await.expect("insert");
    assert!(claim(store, &["l"], 0).await.is_empty(), "limit 0");
    assert_eq!(claim(store, &["l"], 3).await.len(), 3);
    assert_eq!(claim(store, &["l"], 3).await.len(), 3);
    assert_eq!(claim(store, &["l"], 3).await.len(), 1);
    assert!(claim(store, &["l"], 3).await.is_empty());
}

/// Many workers claiming at once never get the same job twice, and together they
/// claim every job exactly once.
pub async fn concurrent_claims_are_disjoint(store: Arc<dyn Store>) {
    const JOBS: usize = 200;
    const WORKERS: usize = 16;
    let jobs: Vec<NewJob> = (0..JOBS).map(|i| NewJob::new("race", json!(i))).collect();
    let ids = store.job_insert_many(&jobs).await.expect("insert");

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut request = request(&["race"], &[DEFAULT_QUEUE], 3, LONG_LEASE);
            request.worker_id = format!("worker-{worker}");
            loop {
                let claimed = store
                    .job_claim(&request)
                    .await
                    .expect("concurrent job_claim");
                if claimed.is_empty() {
                    break;
                }
                for c in claimed {
                    assert_eq!(c.job.worker_id.as_deref(), Some(request.worker_id.as_str()));
                    mine.push((c.job.id, c.token));
                }
                tokio::task::yield_now().await;
            }
            mine
        });
    }
    let mut seen: HashMap<JobId, usize> = HashMap::new();
    let mut tokens = Vec::new();
    while let Some(result) = tasks.join_next().await {
        for (id, token) in result.expect("claimer task panicked") {
            *seen.entry(id).or_default() += 1;
            tokens.push((id, token));
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs claimed more than once: {twice:?}");
    let all: BTreeSet<JobId> = ids.iter().copied().collect();
    let got: BTreeSet<JobId> = seen.keys().copied().collect();
    assert_eq!(got, all, "every job is claimed exactly once");
    for (id, token) in tokens.iter().take(20) {
        let job = get(&*store, *id).await;
        assert_eq!(job.runs, 1, "job {id} ran once");
        store
            .job_heartbeat(*id, *token, LONG_LEASE)
            .await
            .expect("the claimer's token is the job's token");
    }
}

// ---------------------------------------------------------------------------------
// running

/// A heartbeat extends the lease (a job heartbeating past its first lease is not
/// rescued) and returns no requests when there are none.
pub async fn heartbeat_extends_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("h")).await;
    let claimed = claim_id(store, "h", id, SHORT_LEASE).await;
    let before = now_millis();
    let control = store
        .job_heartbeat(id, claimed.token, LONG_LEASE)
        .await
        .expect("heartbeat");
    assert_eq!(control, Control::default(), "no pending requests");
    let lease = get(store, id).await.lease_expires_at.expect("lease set");
    assert!(
        lease >= before + 60_000 - CLOCK_SLACK_MS,
        "lease_expires_at {lease} should be about now + 60 s"
    );
    let rescued = crash(store, 3).await;
    assert!(
        rescued.is_empty(),
        "a live lease is not rescued: {rescued:?}"
    );
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.crashes, 0);
    store
        .job_heartbeat(id, claimed.token, LONG_LEASE)
        .await
        .expect("heartbeat again");
}

/// A checkpoint writes cursor and progress, sets `checkpointed_at`, extends the lease
/// and leaves the job running; a later checkpoint overwrites it.
pub async fn checkpoint_writes_progress(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("cp")).await;
    let claimed = claim_id(store, "cp", id, SHORT_LEASE).await;
    let before = now_millis();
    let first = Progress {
        cursor: Some(json!({ "id": 10, "path": ["a", "b"] })),
        items_done: 10,
        items_total: Some(5_000_000_000),
        running_ms: 1_234,
    };
    let control = store
        .job_checkpoint(id, claimed.token, &first, LONG_LEASE)
        .await
        .expect("checkpoint");
    assert_eq!(control, Control::default());
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.cursor, first.cursor);
    assert_eq!(job.items_done, 10);
    assert_eq!(job.items_total, Some(5_000_000_000));
    assert_eq!(job.running_ms, 1_234);
    assert_recent(job.checkpointed_at, before, "checkpointed_at");
    assert!(
        job.lease_expires_at.expect("lease") >= before + 60_000 - CLOCK_SLACK_MS,
        "checkpoint extends the lease"
    );

    let second = Progress {
        cursor: Some(json!({ "id": 20 })),
        items_done: 20,
        items_total: None,
        running_ms: 2_000,
    };
    store
        .job_checkpoint(id, claimed.token, &second, LONG_LEASE)
        .await
        .expect("second checkpoint");
    let job = get(store, id).await;
    assert_eq!(job.cursor, second.cursor);
    assert_eq!(job.items_done, 20);
    assert_eq!(job.items_total, None);
    assert_eq!(job.running_ms, 2_000);
    assert!(crash(store, 3).await.is_empty(), "lease was extended");
}

/// Heartbeat, checkpoint and release with a token other than the run's fail with
/// `LeaseLost` and change nothing.
pub async fn wrong_token_is_rejected(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("w")).await;
    let claimed = claim_id(store, "w", id, LONG_LEASE).await;
    store
        .job_checkpoint(id, claimed.token, &progress(json!(1), 1), LONG_LEASE)
        .await
        .expect("checkpoint with the right token");
    let before = get(store, id).await;
    let wrong = other_token(claimed.token);

    assert_lease_lost(
        store.job_heartbeat(id, wrong, LONG_LEASE).await,
        id,
        "heartbeat",
    );
    assert_lease_lost(
        store
            .job_checkpoint(id, wrong, &progress(json!(2), 2), LONG_LEASE)
            .await,
        id,
        "checkpoint",
    );
    assert_lease_lost(
        store
            .job_release(id, wrong, Some(&progress(json!(3), 3)), &Outcome::Completed)
            .await,
        id,
        "release",
    );
    assert_eq!(
        get(store, id).await,
        before,
        "rejected writes change nothing"
    );
    release(store, &claimed, None, Outcome::Completed).await;
}

// ---------------------------------------------------------------------------------
// crashes

/// When a lease expires, the rescuer requeues the job with `crashes + 1` and
/// `attempts + 1`; the lost worker's heartbeat, checkpoint and release are rejected
/// from then on, even after another worker claims the job, and the new run gets a new
/// token and the last checkpointed cursor. Jobs with live leases are left alone.
pub async fn lease_expiry_requeues_and_fences_stale_worker(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("x")).await;
    let live = insert(store, new_job("live")).await;
    let live_run = claim_id(store, "live", live, LONG_LEASE).await;
    let stale = claim_id(store, "x", id, SHORT_LEASE).await;
    let cursor = json!({ "after": 41 });
    store
        .job_checkpoint(id, stale.token, &progress(cursor.clone(), 41), SHORT_LEASE)
        .await
        .expect("checkpoint before the crash");

    let before = now_millis();
    let rescued = crash(store, 5).await;
    assert_eq!(
        rescued,
        vec![Rescued {
            id,
            state: JobState::Queued
        }],
        "only the expired job is rescued"
    );
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.crashes, 1);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.finished_at, None);
    assert!(
        job.run_at <= now_millis() + CLOCK_SLACK_MS,
        "claimable at once"
    );
    assert_recent(Some(job.run_at), before, "run_at after rescue");
    assert_run_cleared(&job);
    assert_eq!(
        get(store, live).await.state,
        JobState::Running,
        "live lease untouched"
    );
    assert!(
        store
            .job_rescue_expired(5)
            .await
            .expect("rescue")
            .is_empty(),
        "a second rescue finds nothing"
    );

    let token = stale.token;
    assert_lease_lost(
        store.job_heartbeat(id, token, LONG_LEASE).await,
        id,
        "stale heartbeat",
    );
    assert_lease_lost(
        store
            .job_checkpoint(id, token, &progress(json!({ "after": 99 }), 99), LONG_LEASE)
            .await,
        id,
        "stale checkpoint",
    );
    assert_lease_lost(
        store
            .job_release(id, token, None, &Outcome::Completed)
            .await,
        id,
        "stale release",
    );

    let fresh = claim_id(store, "x", id, LONG_LEASE).await;
    assert_ne!(fresh.token, stale.token, "a new run gets a new token");
    assert_eq!(
        fresh.job.cursor,
        Some(cursor),
        "the new run resumes from the checkpoint"
    );
    assert_eq!(fresh.job.items_done, 41);
    assert_eq!(fresh.job.runs, 2);
    assert_lease_lost(
        store
            .job_checkpoint(id, token, &progress(json!({ "after": 99 }), 99), LONG_LEASE)
            .await,
        id,
        "stale checkpoint after the new claim",
    );
    assert_lease_lost(
        store
            .job_release(
                id,
                token,
                None,
                &Outcome::Failed {
                    error: "stale".into(),
                },
            )
            .await,
        id,
        "stale release after the new claim",
    );
    store
        .job_checkpoint(
            id,
            fresh.token,
            &progress(json!({ "after": 50 }), 50),
            LONG_LEASE,
        )
        .await
        .expect("the new run's token works");
    release(store, &fresh, None, Outcome::Completed).await;
    release(store, &live_run, None, Outcome::Completed).await;
}

/// A job whose worker loses its lease `max_crashes` times without progress fails,
/// with an error that mentions the lost lease, and its last token is fenced off.
pub async fn crash_loop_fails_job(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("poison")).await;
    let first = claim_id(store, "poison", id, SHORT_LEASE).await;
    let rescued = crash(store, 2).await;
    assert_eq!(
        rescued,
        vec![Rescued {
            id,
            state: JobState::Queued
        }]
    );
    assert_eq!(get(store, id).await.crashes, 1);

    let second = claim_id(store, "poison", id, SHORT_LEASE).await;
    let rescued = crash(store, 2).await;
    assert_eq!(
        rescued,
        vec![Rescued {
            id,
            state: JobState::Failed
        }]
    );
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.crashes, 2);
    assert_eq!(job.attempts, 2);
    assert!(job.finished_at.is_some(), "a failed job is finished");
    assert_run_cleared(&job);
    let error = job.last_error.expect("the failure says why");
    assert!(
        error.contains("lease"),
        "the error should say the worker lost its lease: {error:?}"
    );
    assert!(
        claim(store, &["poison"], 5).await.is_empty(),
        "a failed job is not claimable"
    );
    for run in [&first, &second] {
        assert_lease_lost(
            store.job_heartbeat(id, run.token, LONG_LEASE).await,
            id,
            "heartbeat of a crashed run",
        );
        assert_lease_lost(
            store
                .job_release(id, run.token, None, &Outcome::Completed)
                .await,
            id,
            "release of a crashed run",
        );
    }
}

/// Crashes use up attempts: when they reach `max_attempts` the job fails, even below
/// `max_crashes`.
pub async fn crashes_use_up_attempts(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("fragile").max_attempts(2)).await;
    claim_id(store, "fragile", id, SHORT_LEASE).await;
    assert_eq!(
        crash(store, 100).await,
        vec![Rescued {
            id,
            state: JobState::Queued
        }]
    );
    let job = get(store, id).await;
    assert_eq!((job.attempts, job.crashes), (1, 1));

    claim_id(store, "fragile", id, SHORT_LEASE).await;
    assert_eq!(
        crash(store, 100).await,
        vec![Rescued {
            id,
            state: JobState::Failed
        }]
    );
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempts, 2);
    assert!(job.last_error.is_some(), "the failure says why");
    assert!(job.finished_at.is_some());
}

/// A checkpoint that advances `items_done` resets `crashes` to 0; one that does not
/// advance it leaves `crashes` alone.
pub async fn checkpoint_progress_resets_crashes(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("r")).await;
    let run = claim_id(store, "r", id, SHORT_LEASE).await;
    store
        .job_checkpoint(id, run.token, &progress(json!(5), 5), SHORT_LEASE)
        .await
        .expect("checkpoint");
    crash(store, 10).await;
    assert_eq!(get(store, id).await.crashes, 1);

    let run = claim_id(store, "r", id, LONG_LEASE).await;
    store
        .job_checkpoint(id, run.token, &progress(json!(5), 5), LONG_LEASE)
        .await
        .expect("checkpoint without progress");
    assert_eq!(get(store, id).await.crashes, 1, "no progress, crashes stay");
    store
        .job_checkpoint(id, run.token, &progress(json!(6), 6), LONG_LEASE)
        .await
        .expect("checkpoint with progress");
    let job = get(store, id).await;
    assert_eq!(job.crashes, 0, "progress resets crashes");
    assert_eq!(job.attempts, 1, "attempts are not reset by progress");
}

// ---------------------------------------------------------------------------------
// releasing

/// `Completed` finishes the job: state completed, `finished_at` set, progress written,
/// run cleared, no attempt used.
pub async fn release_completed(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("done")).await;
    let run = claim_id(store, "done", id, LONG_LEASE).await;
    let before = now_millis();
    let last = progress(json!({ "end": true }), 100);
    release(store, &run, Some(&last), Outcome::Completed).await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Completed);
    assert_recent(job.finished_at, before, "finished_at");
    assert_eq!(job.cursor, last.cursor);
    assert_eq!(job.items_done, 100);
    assert_eq!(job.items_total, last.items_total);
    assert_eq!(job.running_ms, last.running_ms);
    assert_recent(job.checkpointed_at, before, "checkpointed_at");
    assert_eq!((job.attempts, job.interruptions), (0, 0));
    assert_eq!(job.last_error, None);
    assert_run_cleared(&job);
    assert!(claim(store, &["done"], 5).await.is_empty());
}

/// `job_delete` removes a finished or paused job and its history, frees its unique
/// key, and refuses jobs that may run (naming what to do) and unknown ids.
pub async fn delete_finished_and_paused_jobs_with_their_history(store: Arc<dyn Store>) {
    let store = &*store;
    let done = insert(store, new_job("del").unique_key("del-1")).await;
    let run = claim_id(store, "del", done, LONG_LEASE).await;
    release(store, &run, None, Outcome::Completed).await;
    let failed = insert(store, new_job("del")).await;
    let run = claim_id(store, "del", failed, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Failed {
            error: "boom".into(),
        },
    )
    .await;
    let cancelled = insert(store, new_job("del")).await;
    store.job_cancel(cancelled).await.expect("cancel");
    let paused = insert(store, new_job("del")).await;
    store.job_pause(paused).await.expect("pause");
    let running = insert(store, new_job("del")).await;
    let run = claim_id(store, "del", running, LONG_LEASE).await;
    let queued = insert(store, new_job("del")).await;
    assert!(
        !store
            .job_events(cancelled, 10)
            .await
            .expect("events")
            .is_empty(),
        "an operator's cancel is in the job's history"
    );

    for (id, state) in [
        (queued, "may start at any moment"),
        (running, "cancel it first"),
    ] {
        match store.job_delete(id).await {
            Err(Error::InvalidTransition {
                job, action, hint, ..
            }) => {
                assert_eq!((job, action), (id, "delete"));
                assert!(hint.contains(state), "{hint}");
            }
            other => panic!("deleting job {id} should be refused, got {other:?}"),
        }
        assert!(
            store.job_get(id).await.expect("get").is_some(),
            "still there"
        );
    }
    for id in [done, failed, cancelled, paused] {
        assert_eq!(store.job_delete(id).await.expect("delete"), 1, "job {id}");
        assert!(
            store.job_get(id).await.expect("get").is_none(),
            "job {id} gone"
        );
        assert!(
            store.job_events(id, 10).await.expect("events").is_empty(),
            "job {id}'s history gone"
        );
    }
    assert!(matches!(
        store.job_delete(done).await,
        Err(Error::JobNotFound(id)) if id == done
    ));
    // the unique key is free again
    insert(store, new_job("del").unique_key("del-1")).await;
    // the running job's run goes on undisturbed
    release(store, &run, None, Outcome::Completed).await;
    assert_eq!(get(store, running).await.state, JobState::Completed);
}

/// Retention: `job_prune` deletes finished top-level jobs of one state that finished
/// before a time, in batches of at most `limit`, with their history; `job_prunable`
/// counts them; jobs that may still run are never touched.
pub async fn prune_deletes_finished_jobs_in_batches(store: Arc<dyn Store>) {
    let store = &*store;
    let before_any = now_millis() - 60_000;
    let mut completed = Vec::new();
    for _ in 0..3 {
        let id = insert(store, new_job("prune")).await;
        let run = claim_id(store, "prune", id, LONG_LEASE).await;
        release(store, &run, None, Outcome::Completed).await;
        completed.push(id);
    }
    let failed = insert(store, new_job("prune")).await;
    let run = claim_id(store, "prune", failed, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Failed {
            error: "boom".into(),
        },
    )
    .await;
    let cancelled = insert(store, new_job("prune")).await;
    store.job_cancel(cancelled).await.expect("cancel");
    let queued = insert(store, new_job("prune")).await;
    let later = now_millis() + 1_000;

    let count = |state, at| async move { store.job_prunable(state, at).await.expect("count") };
    assert_eq!(count(JobState::Completed, later).await, 3);
    assert_eq!(
        count(JobState::Completed, before_any).await,
        0,
        "none that old"
    );
    assert_eq!(
        store
            .job_prune(JobState::Completed, before_any, 0, 10)
            .await
            .expect("prune")
            .deleted,
        0
    );
    // batches of 2 walked by id: 2, then 1, then none
    let mut batches = Vec::new();
    let mut after = 0;
    loop {
        let batch = store
            .job_prune(JobState::Completed, later, after, 2)
            .await
            .expect("prune");
        batches.push(batch.deleted);
        match batch.last_id {
            Some(last) => {
                assert!(last > after, "the walk moves forward");
                after = last;
            }
            None => break,
        }
    }
    assert_eq!(batches, [2, 1, 0]);
    assert_eq!(after, completed[2], "the last batch ends at the last id");
    for id in completed {
        assert!(store.job_get(id).await.expect("get").is_none(), "job {id}");
        assert!(store.job_events(id, 10).await.expect("events").is_empty());
    }
    for id in [failed, cancelled, queued] {
        assert!(
            store.job_get(id).await.expect("get").is_some(),
            "job {id} stays"
        );
    }
    // ids at or below `after` are left alone
    assert_eq!(
        store
            .job_prune(JobState::Cancelled, later, cancelled, 10)
            .await
            .expect("prune")
            .deleted,
        0
    );
    assert_eq!(
        store
            .job_prune(JobState::Cancelled, later, 0, 10)
            .await
            .expect("prune"),
        iterjob::store::PruneBatch {
            deleted: 1,
            last_id: Some(cancelled)
        }
    );
    assert!(store.job_get(cancelled).await.expect("get").is_none());
    assert!(store.job_get(failed).await.expect("get").is_some());
    for state in [JobState::Queued, JobState::Running, JobState::Paused] {
        assert!(
            matches!(
                store.job_prune(state, later, 0, 10).await,
                Err(Error::Config(ref m)) if m.contains("only finished jobs")
            ),
            "{state} jobs are never pruned"
        );
    }
    assert!(store.job_get(queued).await.expect("get").is_some());
}

/// `Interrupted` requeues the job at the given `run_at` with `interruptions + 1` and
/// no attempt used; it is claimable again from then.
pub async fn release_interrupted(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("int")).await;
    for (n, reason) in [
        InterruptReason::Shutdown,
        InterruptReason::TimeSlice,
        InterruptReason::Throttled,
        InterruptReason::Unavailable,
    ]
    .into_iter()
    .enumerate()
    {
        let run = claim_id(store, "int", id, LONG_LEASE).await;
        let run_at = now_millis() - 10;
        let at = progress(json!({ "n": n }), n as u64 + 1);
        // a fault outside the job says what it was, as the job's last error
        let why = (reason == InterruptReason::Unavailable)
            .then(|| "interrupted, no attempt used: the database is locked".to_string());
        release(
            store,
            &run,
            Some(&at),
            Outcome::Interrupted {
                reason,
                run_at,
                error: why.clone(),
            },
        )
        .await;
        let job = get(store, id).await;
        assert_eq!(job.last_error, why, "interrupted by {reason}");
        assert_eq!(job.state, JobState::Queued, "interrupted by {reason}");
        assert_eq!(job.run_at, run_at);
        assert_eq!(job.interruptions, n as u32 + 1);
        assert_eq!(job.attempts, 0, "an interruption is not an attempt");
        assert_eq!(job.finished_at, None);
        assert_eq!(job.cursor, at.cursor);
        assert_eq!(job.items_done, n as u64 + 1);
        assert_run_cleared(&job);
    }
    let run = claim_id(store, "int", id, LONG_LEASE).await;
    assert_eq!(run.job.runs, 5);
    assert_eq!(run.job.cursor, Some(json!({ "n": 3 })));
    // an interruption without a cause keeps the last error
    release(
        store,
        &run,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::Shutdown,
            run_at: now_millis(),
            error: None,
        },
    )
    .await;
    assert_eq!(
        get(store, id).await.last_error.as_deref(),
        Some("interrupted, no attempt used: the database is locked")
    );
}

/// `job_release_many` writes each release of a batch exactly as `job_release` would,
/// whatever mix of outcomes, with and without progress.
pub async fn release_many_mixed_outcomes(store: Arc<dyn Store>) {
    let store = &*store;
    assert!(
        store
            .job_release_many(&[])
            .await
            .expect("empty batch")
            .is_empty(),
        "an empty batch has no results"
    );
    let kinds = ["mc", "mi", "mp", "mx", "mr", "mf"];
    let mut runs = Vec::new();
    for kind in kinds {
        let id = insert(store, new_job(kind)).await;
        runs.push(claim_id(store, kind, id, LONG_LEASE).await);
    }
    store
        .job_pause(runs[2].job.id)
        .await
        .expect("pause request");
    let before = now_millis();
    let requeue_at = now_millis() - 10;
    let retry_at = now_millis() + HOUR_MS;
    let outcomes = [
        (
            Some(progress(json!({ "end": true }), 100)),
            Outcome::Completed,
        ),
        (
            Some(progress(json!(5), 5)),
            Outcome::Interrupted {
                reason: InterruptReason::TimeSlice,
                run_at: requeue_at,
                error: None,
            },
        ),
        (None, Outcome::Paused),
        (Some(progress(json!(9), 9)), Outcome::Cancelled),
        (
            Some(progress(json!(7), 7)),
            Outcome::Retry {
                error: "upstream: timeout".into(),
                run_at: retry_at,
            },
        ),
        (
            None,
            Outcome::Failed {
                error: "bad input".into(),
            },
        ),
    ];
    let releases: Vec<Release> = runs
        .iter()
        .zip(outcomes.iter().cloned())
        .map(|(run, (progress, outcome))| Release {
            id: run.job.id,
            token: run.token,
            progress,
            outcome,
        })
        .collect();
    let results = store
        .job_release_many(&releases)
        .await
        .expect("job_release_many");
    assert_eq!(results.len(), releases.len(), "one result per release");
    for (release, result) in releases.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("release of job {} in a batch: {e}", release.id));
    }

    let done = get(store, runs[0].job.id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_recent(done.finished_at, before, "finished_at");
    assert_eq!(done.cursor, Some(json!({ "end": true })));
    assert_eq!((done.items_done, done.running_ms), (100, 1_000));
    assert_recent(done.checkpointed_at, before, "checkpointed_at");

    let requeued = get(store, runs[1].job.id).await;
    assert_eq!(requeued.state, JobState::Queued);
    assert_eq!(requeued.run_at, requeue_at);
    assert_eq!((requeued.interruptions, requeued.attempts), (1, 0));
    assert_eq!(requeued.cursor, Some(json!(5)));
    assert_eq!(requeued.finished_at, None);

    let paused = get(store, runs[2].job.id).await;
    assert_eq!(paused.state, JobState::Paused);
    assert!(!paused.pause_requested, "the pause request is cleared");
    assert_eq!(paused.cursor, None, "released without progress");
    assert_eq!(paused.checkpointed_at, None);

    let cancelled = get(store, runs[3].job.id).await;
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_recent(cancelled.finished_at, before, "finished_at");
    assert_eq!(cancelled.cursor, Some(json!(9)));

    let retrying = get(store, runs[4].job.id).await;
    assert_eq!(retrying.state, JobState::Retrying);
    assert_eq!(retrying.run_at, retry_at);
    assert_eq!(retrying.attempts, 1);
    assert_eq!(retrying.last_error.as_deref(), Some("upstream: timeout"));
    assert_eq!(retrying.cursor, Some(json!(7)));

    let failed = get(store, runs[5].job.id).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("bad input"));
    assert_recent(failed.finished_at, before, "finished_at");

    for run in &runs {
        assert_run_cleared(&get(store, run.job.id).await);
    }
    assert_eq!(
        claim_ids(store, &kinds, &[DEFAULT_QUEUE]).await,
        BTreeSet::from([runs[1].job.id]),
        "only the interrupted job is claimable again"
    );
}

/// Each release of a `job_release_many` batch is fenced by its own token: a stale
/// token or a missing job fails that release alone (`LeaseLost`, `JobNotFound`) and
/// changes nothing of its job, while the rest of the batch is written.
pub async fn release_many_fences_each_release(store: Arc<dyn Store>) {
    let store = &*store;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let id = insert(store, new_job("mfence")).await;
        runs.push(claim_id(store, "mfence", id, LONG_LEASE).await);
    }
    let missing = runs.iter().map(|r| r.job.id).max().unwrap_or(0) + 1_000;
    let release = |id: JobId, token: RunToken, n: u64| Release {
        id,
        token,
        progress: Some(progress(json!(n), n)),
        outcome: Outcome::Completed,
    };
    let batch = vec![
        release(runs[0].job.id, runs[0].token, 1),
        release(runs[1].job.id, other_token(runs[1].token), 2),
        release(missing, runs[2].token, 3),
        release(runs[2].job.id, runs[2].token, 4),
        release(runs[3].job.id, runs[3].token, 5),
    ];
    let results = store
        .job_release_many(&batch)
        .await
        .expect("job_release_many");
    assert_eq!(results.len(), 5, "one result per release");
    let mut results = results.into_iter();
    let mut next = || results.next().expect("a result");
    next().expect("release with the right token");
    assert_lease_lost(next(), runs[1].job.id, "batched release with a stale token");
    assert_not_found(next(), missing, "batched release");
    next().expect("release with the right token");
    next().expect("release with the right token");

    for (run, items) in [(&runs[0], 1), (&runs[2], 4), (&runs[3], 5)] {
        let job = get(store, run.job.id).await;
        assert_eq!(job.state, JobState::Completed, "job {}", run.job.id);
        assert_eq!(job.items_done, items);
    }
    let fenced = get(store, runs[1].job.id).await;
    assert_eq!(
        fenced.state,
        JobState::Running,
        "the fenced release changed nothing"
    );
    assert_eq!(fenced.items_done, 0);
    assert_eq!(fenced.cursor, None);
    assert!(fenced.lease_expires_at.is_some(), "its lease stays");

    // the same batch again: every run is over, so every release is rejected
    let again = store
        .job_release_many(&[
            release(runs[0].job.id, runs[0].token, 10),
            release(runs[3].job.id, runs[3].token, 10),
        ])
        .await
        .expect("job_release_many");
    let mut again = again.into_iter();
    assert_lease_lost(
        again.next().expect("a result"),
        runs[0].job.id,
        "second release",
    );
    assert_lease_lost(
        again.next().expect("a result"),
        runs[3].job.id,
        "second release",
    );
    assert_eq!(get(store, runs[0].job.id).await.items_done, 1, "unchanged");

    // the run whose release was fenced still owns its job
    release_one(store, &runs[1], 6).await;
    assert_eq!(get(store, runs[1].job.id).await.state, JobState::Completed);
}

async fn release_one(store: &dyn Store, run: &Claimed, n: u64) {
    release(store, run, Some(&progress(json!(n), n)), Outcome::Completed).await;
}

/// `Paused` parks the job (not claimable) and clears the pause request.
pub async fn release_paused(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("pz")).await;
    let run = claim_id(store, "pz", id, LONG_LEASE).await;
    store.job_pause(id).await.expect("pause request");
    release(store, &run, Some(&progress(json!(3), 3)), Outcome::Paused).await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Paused);
    assert!(!job.pause_requested, "the request is fulfilled");
    assert!(!job.cancel_requested);
    assert_eq!(job.finished_at, None);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.cursor, Some(json!(3)));
    assert_run_cleared(&job);
    assert!(
        claim(store, &["pz"], 5).await.is_empty(),
        "a paused job is not claimable"
    );
}

/// `Cancelled` finishes the job as cancelled and clears the requests.
pub async fn release_cancelled(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("cx")).await;
    let run = claim_id(store, "cx", id, LONG_LEASE).await;
    store.job_cancel(id).await.expect("cancel request");
    let before = now_millis();
    release(store, &run, None, Outcome::Cancelled).await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Cancelled);
    assert_recent(job.finished_at, before, "finished_at");
    assert!(!job.cancel_requested, "the request is fulfilled");
    assert!(!job.pause_requested);
    assert_eq!(job.attempts, 0);
    assert_run_cleared(&job);
}

/// `Retry` moves the job to retrying at `run_at` with `attempts + 1` and the error;
/// it becomes claimable once `run_at` has passed.
pub async fn release_retry(store: Arc<dyn Store>) {
    let store = &*store;
    let later = insert(store, new_job("rl")).await;
    let run = claim_id(store, "rl", later, LONG_LEASE).await;
    let run_at = now_millis() + HOUR_MS;
    release(
        store,
        &run,
        Some(&progress(json!(7), 7)),
        Outcome::Retry {
            error: "upstream: connection reset".into(),
            run_at,
        },
    )
    .await;
    let job = get(store, later).await;
    assert_eq!(job.state, JobState::Retrying);
    assert_eq!(job.run_at, run_at);
    assert_eq!(job.attempts, 1);
    assert_eq!(
        job.last_error.as_deref(),
        Some("upstream: connection reset")
    );
    assert_eq!(job.finished_at, None);
    assert_eq!(job.cursor, Some(json!(7)));
    assert_run_cleared(&job);
    assert!(
        claim(store, &["rl"], 5).await.is_empty(),
        "not before run_at"
    );

    let due = insert(store, new_job("rd")).await;
    let run = claim_id(store, "rd", due, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "e1".into(),
            run_at: now_millis() - 1,
        },
    )
    .await;
    let again = claim_id(store, "rd", due, LONG_LEASE).await;
    assert_eq!(again.job.state, JobState::Running);
    assert_eq!(again.job.attempts, 1, "claiming does not use an attempt");
    assert_eq!(
        again.job.last_error.as_deref(),
        Some("e1"),
        "the error stays visible"
    );
    release(
        store,
        &again,
        None,
        Outcome::Retry {
            error: "e2".into(),
            run_at: now_millis() - 1,
        },
    )
    .await;
    let job = get(store, due).await;
    assert_eq!(job.attempts, 2);
    assert_eq!(job.last_error.as_deref(), Some("e2"));
}

/// `Failed` finishes the job as failed with `attempts + 1` and the error.
pub async fn release_failed(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("f")).await;
    let run = claim_id(store, "f", id, LONG_LEASE).await;
    let before = now_millis();
    release(
        store,
        &run,
        Some(&progress(json!(9), 9)),
        Outcome::Failed {
            error: "fatal: bad row 9".into(),
        },
    )
    .await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("fatal: bad row 9"));
    assert_recent(job.finished_at, before, "finished_at");
    assert_eq!(job.cursor, Some(json!(9)));
    assert_run_cleared(&job);
    assert!(claim(store, &["f"], 5).await.is_empty());
}

/// `job_note_failure` keeps where and how the run failed (the item's cursor, the
/// attempt, the worker, a backtrace, verbatim), through the release that follows
/// and the next run, until the next failure; it is fenced like a checkpoint.
pub async fn note_failure_keeps_where_the_run_failed(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("nf")).await;
    let run = claim_id(store, "nf", id, LONG_LEASE).await;
    assert_eq!(
        get(store, id).await.last_failure,
        None,
        "none before a failure"
    );
    let failure = iterjob::Failure {
        item: Some(json!({"id": 41, "name": "<script>alert('x')</script> ünïcode"})),
        attempt: 1,
        worker: run.job.worker_id.clone().unwrap_or_default(),
        at: now_millis(),
        backtrace: Some("   0: my_job::process\n             at src/job.rs:10:5\n   1: …".into()),
    };
    store
        .job_note_failure(id, run.token, &failure)
        .await
        .expect("job_note_failure");
    assert_eq!(get(store, id).await.last_failure.as_ref(), Some(&failure));
    // fenced: a stale token, an unknown job
    let stale = store
        .job_note_failure(id, RunToken(run.token.0.wrapping_add(1)), &failure)
        .await;
    assert!(
        matches!(stale, Err(Error::LeaseLost { job }) if job == id),
        "a stale token is refused: {stale:?}"
    );
    let missing = store.job_note_failure(id + 1000, run.token, &failure).await;
    assert!(
        matches!(missing, Err(Error::JobNotFound(_))),
        "an unknown job: {missing:?}"
    );
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "bad row 41".into(),
            run_at: now_millis(),
        },
    )
    .await;
    let job = get(store, id).await;
    assert_eq!(
        job.last_failure.as_ref(),
        Some(&failure),
        "kept by the release"
    );
    // the next run ends well: the last failure is still the last failure
    let run = claim_id(store, "nf", id, LONG_LEASE).await;
    release(store, &run, None, Outcome::Completed).await;
    assert_eq!(get(store, id).await.last_failure, Some(failure));
    // a run that is not running cannot note one
    let late = store
        .job_note_failure(id, run.token, &iterjob::Failure::default())
        .await;
    assert!(late.is_err(), "a finished job takes no failure: {late:?}");
}

/// A release without progress keeps the last checkpoint's cursor and progress.
pub async fn release_without_progress_keeps_cursor(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("k")).await;
    let run = claim_id(store, "k", id, LONG_LEASE).await;
    let at = progress(json!({ "page": 4 }), 40);
    store
        .job_checkpoint(id, run.token, &at, LONG_LEASE)
        .await
        .expect("checkpoint");
    let checkpointed = get(store, id).await;
    release(
        store,
        &run,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::Shutdown,
            run_at: now_millis(),
            error: None,
        },
    )
    .await;
    let job = get(store, id).await;
    assert_eq!(job.cursor, at.cursor);
    assert_eq!(job.items_done, 40);
    assert_eq!(job.items_total, at.items_total);
    assert_eq!(job.running_ms, at.running_ms);
    assert_eq!(job.checkpointed_at, checkpointed.checkpointed_at);
}

/// After a release the run's token is dead: a second release, a heartbeat or a
/// checkpoint with it fail with `LeaseLost`.
pub async fn release_ends_the_run(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("once")).await;
    let run = claim_id(store, "once", id, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Interrupted {
            reason: InterruptReason::TimeSlice,
            run_at: now_millis() + HOUR_MS,
            error: None,
        },
    )
    .await;
    assert_lease_lost(
        store
            .job_release(id, run.token, None, &Outcome::Completed)
            .await,
        id,
        "second release",
    );
    assert_lease_lost(
        store.job_heartbeat(id, run.token, LONG_LEASE).await,
        id,
        "heartbeat",
    );
    assert_lease_lost(
        store
            .job_checkpoint(id, run.token, &progress(json!(1), 1), LONG_LEASE)
            .await,
        id,
        "checkpoint",
    );
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.interruptions, 1, "the rejected release changed nothing");
}

// ---------------------------------------------------------------------------------
// operators

/// Pausing a queued or retrying job parks it at once (not claimable); resuming a
/// paused job queues it to run now, even if it was scheduled later.
pub async fn pause_and_resume_waiting_jobs(store: Arc<dyn Store>) {
    let store = &*store;
    let queued = insert(store, new_job("pq").run_at(now_millis() + HOUR_MS)).await;
    let paused = store.job_pause(queued).await.expect("pause queued");
    assert_eq!(paused.id, queued);
    assert_eq!(
        paused.state,
        JobState::Paused,
        "pause returns the changed job"
    );
    assert_eq!(get(store, queued).await.state, JobState::Paused);

    let retrying = insert(store, new_job("pr")).await;
    let run = claim_id(store, "pr", retrying, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "e".into(),
            run_at: now_millis() - 1,
        },
    )
    .await;
    let paused = store.job_pause(retrying).await.expect("pause retrying");
    assert_eq!(paused.state, JobState::Paused);
    assert_eq!(paused.attempts, 1, "pausing keeps the attempts");
    assert!(
        claim(store, &["pq", "pr"], 5).await.is_empty(),
        "paused jobs are not claimable"
    );

    let before = now_millis();
    let resumed = store.job_resume(queued).await.expect("resume");
    assert_eq!(
        resumed.state,
        JobState::Queued,
        "resume returns the changed job"
    );
    assert!(
        resumed.run_at <= now_millis() + CLOCK_SLACK_MS
            && resumed.run_at >= before - CLOCK_SLACK_MS,
        "a resumed job runs now"
    );
    assert!(!resumed.pause_requested);
    claim_id(store, "pq", queued, LONG_LEASE).await;
    store.job_resume(retrying).await.expect("resume");
    let run = claim_id(store, "pr", retrying, LONG_LEASE).await;
    assert_eq!(run.job.attempts, 1, "resuming keeps the attempts");
}

/// Pausing a running job only requests it: the job keeps running, and heartbeat and
/// checkpoint report the request until resume withdraws it.
pub async fn pause_running_job_is_requested(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("pr")).await;
    let run = claim_id(store, "pr", id, LONG_LEASE).await;
    let job = store.job_pause(id).await.expect("pause running");
    assert_eq!(job.state, JobState::Running, "a running job keeps running");
    assert!(job.pause_requested);
    assert!(!job.cancel_requested);
    let wanted = Control {
        pause_requested: true,
        cancel_requested: false,
        split_requested: false,
    };
    assert_eq!(
        store
            .job_heartbeat(id, run.token, LONG_LEASE)
            .await
            .expect("heartbeat"),
        wanted
    );
    assert_eq!(
        store
            .job_checkpoint(id, run.token, &progress(json!(1), 1), LONG_LEASE)
            .await
            .expect("checkpoint"),
        wanted
    );
    let job = store
        .job_resume(id)
        .await
        .expect("resume withdraws the request");
    assert_eq!(job.state, JobState::Running);
    assert!(!job.pause_requested);
    assert_eq!(
        store
            .job_heartbeat(id, run.token, LONG_LEASE)
            .await
            .expect("heartbeat"),
        Control::default()
    );
    store.job_pause(id).await.expect("pause again");
    release(store, &run, None, Outcome::Paused).await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Paused);
    assert!(!job.pause_requested);
}

/// Cancelling a queued, retrying or paused job finishes it at once.
pub async fn cancel_waiting_jobs(store: Arc<dyn Store>) {
    let store = &*store;
    let queued = insert(store, new_job("cq")).await;
    let paused = insert(store, new_job("cp")).await;
    store.job_pause(paused).await.expect("pause");
    let retrying = insert(store, new_job("cr")).await;
    let run = claim_id(store, "cr", retrying, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "e".into(),
            run_at: now_millis() + HOUR_MS,
        },
    )
    .await;
    for id in [queued, paused, retrying] {
        let before = now_millis();
        let job = store.job_cancel(id).await.expect("cancel");
        assert_eq!(
            job.state,
            JobState::Cancelled,
            "cancel returns the changed job"
        );
        assert_recent(job.finished_at, before, "finished_at");
        assert_eq!(get(store, id).await.state, JobState::Cancelled);
    }
    assert!(claim(store, &["cq", "cp", "cr"], 5).await.is_empty());
}

/// Cancelling a running job only requests it: heartbeat and checkpoint report the
/// request; the worker's `Cancelled` release finishes it.
pub async fn cancel_running_job_is_requested(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("cr")).await;
    let run = claim_id(store, "cr", id, LONG_LEASE).await;
    let job = store.job_cancel(id).await.expect("cancel running");
    assert_eq!(job.state, JobState::Running);
    assert!(job.cancel_requested);
    assert_eq!(job.finished_at, None);
    let wanted = Control {
        pause_requested: false,
        cancel_requested: true,
        split_requested: false,
    };
    assert_eq!(
        store
            .job_heartbeat(id, run.token, LONG_LEASE)
            .await
            .expect("heartbeat"),
        wanted
    );
    assert_eq!(
        store
            .job_checkpoint(id, run.token, &progress(json!(1), 1), LONG_LEASE)
            .await
            .expect("checkpoint"),
        wanted
    );
    let job = store.job_pause(id).await.expect("pause too");
    assert!(
        job.pause_requested && job.cancel_requested,
        "both requests pending"
    );
    release(store, &run, None, Outcome::Cancelled).await;
    let job = get(store, id).await;
    assert_eq!(job.state, JobState::Cancelled);
    assert!(
        !job.pause_requested && !job.cancel_requested,
        "requests cleared"
    );
    assert!(job.finished_at.is_some());
}

/// Completed, failed and cancelled jobs cannot be paused, resumed or cancelled, and a
/// completed job cannot be retried: `InvalidTransition` naming job, state and action.
pub async fn finished_jobs_reject_pause_resume_cancel(store: Arc<dyn Store>) {
    let store = &*store;
    let completed = insert(store, new_job("fc")).await;
    let run = claim_id(store, "fc", completed, LONG_LEASE).await;
    release(store, &run, None, Outcome::Completed).await;
    let failed = insert(store, new_job("ff")).await;
    let run = claim_id(store, "ff", failed, LONG_LEASE).await;
    release(store, &run, None, Outcome::Failed { error: "x".into() }).await;
    let cancelled = insert(store, new_job("fx")).await;
    store.job_cancel(cancelled).await.expect("cancel");

    for (id, state) in [
        (completed, JobState::Completed),
        (failed, JobState::Failed),
        (cancelled, JobState::Cancelled),
    ] {
        let before = get(store, id).await;
        assert_invalid(store.job_pause(id).await, id, state, "pause");
        assert_invalid(store.job_resume(id).await, id, state, "resume");
        assert_invalid(store.job_cancel(id).await, id, state, "cancel");
        assert_eq!(
            get(store, id).await,
            before,
            "rejected actions change nothing"
        );
    }
    assert_invalid(
        store.job_retry(completed).await,
        completed,
        JobState::Completed,
        "retry",
    );
}

/// Only paused jobs (or running jobs with a pause pending) can be resumed: queued and
/// retrying jobs give `InvalidTransition`.
pub async fn resume_requires_paused(store: Arc<dyn Store>) {
    let store = &*store;
    let queued = insert(store, new_job("rq")).await;
    assert_invalid(
        store.job_resume(queued).await,
        queued,
        JobState::Queued,
        "resume",
    );
    let retrying = insert(store, new_job("rr")).await;
    let run = claim_id(store, "rr", retrying, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "e".into(),
            run_at: now_millis() + HOUR_MS,
        },
    )
    .await;
    assert_invalid(
        store.job_resume(retrying).await,
        retrying,
        JobState::Retrying,
        "resume",
    );
    assert!(
        get(store, retrying).await.run_at > now_millis(),
        "run_at untouched"
    );
}

/// Retrying a failed job queues it to run now from its last checkpoint: cursor and
/// progress kept, attempts and crashes reset, `finished_at` cleared, `last_error` kept.
pub async fn retry_keeps_cursor_and_resets_attempts(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("rt").max_attempts(5)).await;
    let cursor = json!({ "after": "row-77" });

    let run = claim_id(store, "rt", id, SHORT_LEASE).await;
    store
        .job_checkpoint(id, run.token, &progress(cursor.clone(), 77), SHORT_LEASE)
        .await
        .expect("checkpoint");
    crash(store, 10).await;
    let run = claim_id(store, "rt", id, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Retry {
            error: "e1".into(),
            run_at: now_millis() - 1,
        },
    )
    .await;
    let run = claim_id(store, "rt", id, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Failed {
            error: "fatal".into(),
        },
    )
    .await;
    let failed = get(store, id).await;
    assert_eq!((failed.attempts, failed.crashes), (3, 1));

    let before = now_millis();
    let job = store.job_retry(id).await.expect("retry failed");
    assert_eq!(job.state, JobState::Queued, "retry returns the changed job");
    assert_eq!(job.attempts, 0);
    assert_eq!(job.crashes, 0);
    assert_eq!(job.finished_at, None);
    assert_eq!(
        job.last_error.as_deref(),
        Some("fatal"),
        "last_error is kept"
    );
    assert_eq!(job.cursor, Some(cursor.clone()));
    assert_eq!(job.items_done, 77);
    assert_recent(Some(job.run_at), before, "run_at");
    assert_eq!(job.runs, 3);
    assert_eq!(get(store, id).await, job);

    let run = claim_id(store, "rt", id, LONG_LEASE).await;
    assert_eq!(
        run.job.cursor,
        Some(cursor),
        "the retried run starts at the checkpoint"
    );
    assert_eq!(run.job.runs, 4);
}

/// Retrying a cancelled job queues it again.
pub async fn retry_cancelled_job(store: Arc<dyn Store>) {
    let store = &*store;
    let id = insert(store, new_job("rc")).await;
    store.job_cancel(id).await.expect("cancel");
    let job = store.job_retry(id).await.expect("retry cancelled");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.finished_at, None);
    assert!(!job.cancel_requested);
    claim_id(store, "rc", id, LONG_LEASE).await;
}

/// Only failed or cancelled jobs can be retried: queued, running, paused, retrying
/// and completed jobs give `InvalidTransition`.
pub async fn retry_requires_failed_or_cancelled(store: Arc<dyn Store>) {
    let store = &*store;
    let queued = insert(store, new_job("q")).await;
    let running = insert(store, new_job("r")).await;
    let run = claim_id(store, "r", running, LONG_LEASE).await;
    let paused = insert(store, new_job("p")).await;
    store.job_pause(paused).await.expect("pause");
    let retrying = insert(store, new_job("t")).await;
    let t_run = claim_id(store, "t", retrying, LONG_LEASE).await;
    release(
        store,
        &t_run,
        None,
        Outcome::Retry {
            error: "e".into(),
            run_at: now_millis() + HOUR_MS,
        },
    )
    .await;
    let completed = insert(store, new_job("c")).await;
    let c_run = claim_id(store, "c", completed, LONG_LEASE).await;
    release(store, &c_run, None, Outcome::Completed).await;

    for (id, state) in [
        (queued, JobState::Queued),
        (running, JobState::Running),
        (paused, JobState::Paused),
        (retrying, JobState::Retrying),
        (completed, JobState::Completed),
    ] {
        let before = get(store, id).await;
        assert_invalid(store.job_retry(id).await, id, state, "retry");
        assert_eq!(
            get(store, id).await,
            before,
            "rejected retry changes nothing"
        );
    }
    store
        .job_heartbeat(running, run.token, LONG_LEASE)
        .await
        .expect("the running job's run is undisturbed");
}

// ---------------------------------------------------------------------------------
// reading

fn ids(jobs: &[JobRecord]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

async fn list(store: &dyn Store, filter: JobFilter) -> Vec<JobId> {
    ids(&store.job_list(&filter).await.expect("job_list"))
}

/// `job_list` returns jobs newest first and filters by state, kind, queue and
/// `before_id`, combined.
pub async fn list_newest_first_with_filters(store: Arc<dyn Store>) {
    let store = &*store;
    assert!(
        list(store, JobFilter::default()).await.is_empty(),
        "empty store"
    );
    let j1 = insert(store, new_job("a").queue("q1")).await;
    let j2 = insert(store, new_job("b").queue("q1")).await;
    let j3 = insert(store, new_job("a").queue("q2")).await;
    let j4 = insert(store, new_job("a").queue("q1")).await;
    let run = store
        .job_claim(&request(&["a"], &["q1"], 10, LONG_LEASE))
        .await
        .expect("claim");
    assert_eq!(run.len(), 2);
    for r in &run {
        if r.job.id == j4 {
            release(store, r, None, Outcome::Completed).await;
        }
    }

    assert_eq!(
        list(store, JobFilter::default()).await,
        vec![j4, j3, j2, j1]
    );
    let full = store
        .job_list(&JobFilter::default())
        .await
        .expect("job_list");
    assert_eq!(full[0], get(store, j4).await, "list returns full records");
    let by_kind = JobFilter {
        kind: Some("a".into()),
        ..JobFilter::default()
    };
    assert_eq!(list(store, by_kind).await, vec![j4, j3, j1]);
    let by_queue = JobFilter {
        queue: Some("q1".into()),
        ..JobFilter::default()
    };
    assert_eq!(list(store, by_queue).await, vec![j4, j2, j1]);
    let by_state = JobFilter {
        state: Some(JobState::Completed),
        ..JobFilter::default()
    };
    assert_eq!(list(store, by_state).await, vec![j4]);
    let running = JobFilter {
        state: Some(JobState::Running),
        ..JobFilter::default()
    };
    assert_eq!(list(store, running).await, vec![j1]);
    let combined = JobFilter {
        state: Some(JobState::Queued),
        kind: Some("a".into()),
        ..JobFilter::default()
    };
    assert_eq!(list(store, combined).await, vec![j3]);
    let before = JobFilter {
        before_id: Some(j3),
        ..JobFilter::default()
    };
    assert_eq!(list(store, before).await, vec![j2, j1]);
    let limited = JobFilter {
        limit: Some(2),
        ..JobFilter::default()
    };
    assert_eq!(list(store, limited).await, vec![j4, j3]);
    let nothing = JobFilter {
        kind: Some("zzz".into()),
        ..JobFilter::default()
    };
    assert!(list(store, nothing).await.is_empty());
}

/// Paging with `limit` and `before_id` (the last id of the previous page) visits
/// every matching job once, newest first.
pub async fn list_pagination(store: Arc<dyn Store>) {
    let store = &*store;
    let jobs: Vec<NewJob> = (0..8)
        .map(|i| new_job(if i % 3 == 0 { "skip" } else { "page" }))
        .collect();
    let all = store.job_insert_many(&jobs).await.expect("insert");
    let mut expected: Vec<JobId> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    expected.reverse();

    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let page = list(
            store,
            JobFilter {
                kind: Some("page".into()),
                before_id,
                limit: Some(2),
                ..JobFilter::default()
            },
        )
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "a page holds at most `limit` jobs");
        before_id = page.last().copied();
        pages.push(page);
        assert!(pages.len() <= 10, "pagination does not terminate");
    }
    assert_eq!(pages.len(), 3, "5 jobs in pages of 2: {pages:?}");
    assert_eq!(pages.concat(), expected);
}

/// Without a limit, `job_list` returns the newest 100 jobs.
pub async fn list_default_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let jobs: Vec<NewJob> = (0..105).map(|_| new_job("many")).collect();
    let ids = store.job_insert_many(&jobs).await.expect("insert");
    let listed = list(store, JobFilter::default()).await;
    assert_eq!(listed.len(), 100, "default limit is 100");
    assert_eq!(listed[0], ids[104], "newest first");
    assert_eq!(listed[99], ids[5]);
}

/// `job_count_by_state` reports every state exactly once, zero when there are none,
/// and counts each job in its state.
pub async fn count_by_state_covers_every_state(store: Arc<dyn Store>) {
    let store = &*store;
    let counts = |c: Vec<(JobState, u64)>| {
        let mut map = HashMap::new();
        for (state, n) in c {
            assert!(
                map.insert(state, n).is_none(),
                "state {state} reported twice"
            );
        }
        for state in JobState::ALL {
            assert!(map.contains_key(&state), "state {state} is missing");
        }
        map
    };
    let empty = counts(store.job_count_by_state().await.expect("count"));
    assert!(empty.values().all(|n| *n == 0), "empty store: {empty:?}");

    insert(store, new_job("queued")).await;
    let running = insert(store, new_job("running")).await;
    claim_id(store, "running", running, LONG_LEASE).await;
    let paused = insert(store, new_job("paused")).await;
    store.job_pause(paused).await.expect("pause");
    for (kind, outcome) in [
        ("completed", Outcome::Completed),
        (
            "retrying",
            Outcome::Retry {
                error: "e".into(),
                run_at: now_millis() + HOUR_MS,
            },
        ),
        ("failed", Outcome::Failed { error: "e".into() }),
    ] {
        let id = insert(store, new_job(kind)).await;
        let run = claim_id(store, kind, id, LONG_LEASE).await;
        release(store, &run, None, outcome).await;
    }
    let cancelled = insert(store, new_job("cancelled")).await;
    store.job_cancel(cancelled).await.expect("cancel");
    insert(store, new_job("queued")).await;

    let got = counts(store.job_count_by_state().await.expect("count"));
    for state in JobState::ALL {
        let want = if state == JobState::Queued { 2 } else { 1 };
        assert_eq!(got[&state], want, "count of {state}: {got:?}");
    }
}

/// Missing ids: `job_get` returns `None`; admin actions fail with `JobNotFound`;
/// run writes fail (with `JobNotFound` or `LeaseLost`).
pub async fn missing_jobs(store: Arc<dyn Store>) {
    let store = &*store;
    let existing = insert(store, new_job("m")).await;
    let missing = existing + 1_000;
    assert_eq!(store.job_get(missing).await.expect("job_get"), None);
    assert_not_found(store.job_pause(missing).await, missing, "pause");
    assert_not_found(store.job_resume(missing).await, missing, "resume");
    assert_not_found(store.job_cancel(missing).await, missing, "cancel");
    assert_not_found(store.job_retry(missing).await, missing, "retry");
    let token = RunToken(42);
    let writes = [
        store
            .job_heartbeat(missing, token, LONG_LEASE)
            .await
            .map(|_| ()),
        store
            .job_checkpoint(missing, token, &progress(json!(1), 1), LONG_LEASE)
            .await
            .map(|_| ()),
        store
            .job_release(missing, token, None, &Outcome::Completed)
            .await,
    ];
    for result in writes {
        match result {
            Err(Error::JobNotFound(id)) | Err(Error::LeaseLost { job: id }) => {
                assert_eq!(id, missing)
            }
            other => panic!("a run write to missing job {missing} must fail, got {other:?}"),
        }
    }
    assert!(
        store
            .job_list(&JobFilter::default())
            .await
            .expect("list")
            .len()
            == 1,
        "nothing was created"
    );
}

// ---------------------------------------------------------------------------------
// rate limits

/// Slack allowed on a rate-limit wait, beyond the time measured between two calls:
/// round trips and rounding.
const RATE_SLACK: Duration = Duration::from_millis(150);

/// Reserves `n` units of `interval` in bucket `key` and checks the wait: the store's
/// answer plus the time since `origin` (just before the bucket's first reservation)
/// must be `expected` (the units reserved before this call, times `interval`), within
/// [`RATE_SLACK`]. Returns the wait.
async fn rate_reserve(
    store: &dyn Store,
    key: &str,
    n: u64,
    interval: Duration,
    origin: tokio::time::Instant,
    expected: Duration,
) -> Duration {
    let asked = origin.elapsed();
    let wait = store
        .rate_acquire(key, n, interval)
        .await
        .expect("rate_acquire");
    let answered = origin.elapsed();
    // the store's `now` lies between `asked` and `answered`
    let low = expected.saturating_sub(answered + RATE_SLACK);
    let high = expected.saturating_sub(asked) + RATE_SLACK;
    assert!(
        wait >= low && wait <= high,
        "rate_acquire({key:?}, {n}, {interval:?}) {asked:?} after the bucket's first \
         reservation waits {wait:?}; expected {expected:?} minus the time since, \
         between {low:?} and {high:?}"
    );
    wait
}

/// Reservations add up: after 5 units of 1 s, the next 3 start 5 s after the first,
/// the next 1 after 8 s; the first reservation of a fresh bucket starts at once.
pub async fn rate_reservations_add_up(store: Arc<dyn Store>) {
    let store = &*store;
    let second = Duration::from_secs(1);
    let origin = tokio::time::Instant::now();
    let first = rate_reserve(store, "add-up", 5, second, origin, Duration::ZERO).await;
    assert!(first <= RATE_SLACK, "a fresh bucket waits {first:?}");
    rate_reserve(store, "add-up", 3, second, origin, 5 * second).await;
    rate_reserve(store, "add-up", 1, second, origin, 8 * second).await;
    // fractional intervals add up to the microsecond, not per unit
    let third = second / 3;
    let origin = tokio::time::Instant::now();
    rate_reserve(store, "thirds", 300, third, origin, Duration::ZERO).await;
    rate_reserve(store, "thirds", 1, third, origin, 100 * second).await;
}

/// Buckets are independent: filling one leaves another (any key, Unicode and
/// quotes included) idle.
pub async fn rate_keys_are_independent(store: Arc<dyn Store>) {
    let store = &*store;
    let second = Duration::from_secs(1);
    let odd = "it's \"ünïcode\"; DROP TABLE x; --";
    let origin = tokio::time::Instant::now();
    rate_reserve(store, "a", 10, second, origin, Duration::ZERO).await;
    let origin_b = tokio::time::Instant::now();
    rate_reserve(store, "b", 1, second, origin_b, Duration::ZERO).await;
    let origin_odd = tokio::time::Instant::now();
    rate_reserve(store, odd, 2, second, origin_odd, Duration::ZERO).await;
    rate_reserve(store, "a", 1, second, origin, 10 * second).await;
    rate_reserve(store, "b", 1, second, origin_b, second).await;
    rate_reserve(store, odd, 1, second, origin_odd, 2 * second).await;
}

/// The wait grows as reservations pile up, one after another and concurrently:
/// eight tasks reserving one 200 ms unit each at once get eight different slots,
/// 200 ms apart (the reservation is atomic).
pub async fn rate_wait_grows_as_reservations_pile_up(store: Arc<dyn Store>) {
    let unit = Duration::from_millis(200);
    let origin = tokio::time::Instant::now();
    let mut last = None;
    for i in 0..6u32 {
        let wait = rate_reserve(&*store, "pile", 1, unit, origin, unit * i).await;
        if let Some(last) = last {
            assert!(
                wait > last,
                "reservation {i} waits {wait:?}, not more than {last:?}"
            );
        }
        last = Some(wait);
    }

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let asked = tokio::time::Instant::now();
                let wait = store
                    .rate_acquire("concurrent", 1, unit)
                    .await
                    .expect("rate_acquire");
                // the slot's start, on this process's clock
                asked + wait
            })
        })
        .collect();
    let mut starts = Vec::new();
    for task in tasks {
        starts.push(task.await.expect("task"));
    }
    starts.sort();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap + RATE_SLACK / 2 >= unit && gap <= unit + RATE_SLACK,
            "concurrent reservations overlap or leave gaps: slots {gap:?} apart, expected \
             {unit:?}"
        );
    }
}

/// An idle bucket banks nothing: after a quiet spell, a reservation starts now, and
/// the one after it waits for the first one's units (no burst).
pub async fn rate_idle_bucket_banks_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let unit = Duration::from_millis(50);
    store
        .rate_acquire("idle", 1, unit)
        .await
        .expect("rate_acquire");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let origin = tokio::time::Instant::now();
    rate_reserve(store, "idle", 4, unit, origin, Duration::ZERO).await;
    let wait = rate_reserve(store, "idle", 1, unit, origin, 4 * unit).await;
    assert!(
        wait >= Duration::from_millis(100),
        "the 400 ms of quiet were banked: the 5th unit after it waits only {wait:?}"
    );
}

// history

/// Events of `id`, oldest first, as (kind, state, reason, items_done, error present).
async fn history(store: &dyn Store, id: JobId) -> Vec<JobEvent> {
    let mut events = store.job_events(id, 1_000).await.expect("job_events");
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(
        ids, sorted,
        "job_events returns distinct events, newest first"
    );
    events.reverse();
    for e in &events {
        assert_eq!(
            e.job_id, id,
            "job_events({id}) returns only that job's events"
        );
    }
    events
}

fn summary(events: &[JobEvent]) -> Vec<(JobEventKind, JobState, Option<InterruptReason>)> {
    events.iter().map(|e| (e.kind, e.state, e.reason)).collect()
}

/// Interruptions, errors, rescues and operator actions each leave one event, with the
/// job's state, cursor and items right after it and the error where there is one;
/// checkpoints and completion leave none; `limit` keeps the newest.
pub async fn job_events_record_history(store: Arc<dyn Store>) {
    use InterruptReason as R;
    use JobEventKind as K;
    use JobState as S;
    let store = &*store;
    let before = now_millis();
    let id = insert(store, new_job("hist")).await;
    let quiet = insert(store, new_job("quiet")).await;
    assert!(
        history(store, id).await.is_empty(),
        "a new job has no history"
    );

    // a checkpoint is not an event; an interruption is, with the released cursor
    let run = claim_id(store, "hist", id, LONG_LEASE).await;
    store
        .job_checkpoint(id, run.token, &progress(json!({ "n": 3 }), 3), LONG_LEASE)
        .await
        .expect("checkpoint");
    assert!(
        history(store, id).await.is_empty(),
        "a checkpoint is not an event"
    );
    let at = progress(json!({ "n": 5 }), 5);
    release(
        store,
        &run,
        Some(&at),
        Outcome::Interrupted {
            reason: R::Shutdown,
            run_at: now_millis() - 10,
            error: None,
        },
    )
    .await;
    let events = history(store, id).await;
    assert_eq!(
        summary(&events),
        vec![(K::Interrupted, S::Queued, Some(R::Shutdown))]
    );
    assert_eq!(
        events[0].cursor,
        Some(json!({ "n": 5 })),
        "the cursor at the interruption"
    );
    assert_eq!(events[0].items_done, 5);
    assert_eq!(events[0].error, None);
    assert_recent(Some(events[0].at), before, "event time");

    // an error to retry, with its cause chain
    let run = claim_id(store, "hist", id, LONG_LEASE).await;
    let error = "syncing product 6: connection refused (attempt 1 of 10)";
    release(
        store,
        &run,
        Some(&progress(json!({ "n": 6 }), 6)),
        Outcome::Retry {
            error: error.into(),
            run_at: now_millis() - 10,
        },
    )
    .await;

    // operator actions on a waiting job
    store.job_pause(id).await.expect("pause a retrying job");
    store.job_resume(id).await.expect("resume");

    // a pause request reaches the running job, which stops at a boundary
    let run = claim_id(store, "hist", id, LONG_LEASE).await;
    store.job_pause(id).await.expect("pause request");
    release(
        store,
        &run,
        Some(&progress(json!({ "n": 8 }), 8)),
        Outcome::Paused,
    )
    .await;
    store.job_resume(id).await.expect("resume the paused job");

    // a lost lease
    let _lost = claim_id(store, "hist", id, SHORT_LEASE).await;
    let rescued = crash(store, 5).await;
    assert_eq!(rescued.len(), 1, "the job is rescued");

    // a fatal error, an operator retry, a cancel
    let run = claim_id(store, "hist", id, LONG_LEASE).await;
    release(
        store,
        &run,
        None,
        Outcome::Failed {
            error: "fatal error (no retry): <script>alert(1)</script>".into(),
        },
    )
    .await;
    store.job_retry(id).await.expect("retry the failed job");
    store.job_cancel(id).await.expect("cancel the queued job");

    let events = history(store, id).await;
    assert_eq!(
        summary(&events),
        vec![
            (K::Interrupted, S::Queued, Some(R::Shutdown)),
            (K::Retrying, S::Retrying, None),
            (K::OperatorPause, S::Paused, None),
            (K::OperatorResume, S::Queued, None),
            (K::OperatorPause, S::Running, None),
            (K::Interrupted, S::Paused, Some(R::Pause)),
            (K::OperatorResume, S::Queued, None),
            (K::Rescued, S::Queued, None),
            (K::Failed, S::Failed, None),
            (K::OperatorRetry, S::Queued, None),
            (K::OperatorCancel, S::Cancelled, None),
        ],
        "the job's history, oldest first"
    );
    assert_eq!(
        events[1].error.as_deref(),
        Some(error),
        "a retry keeps its error"
    );
    assert_eq!(events[1].items_done, 6);
    assert_eq!(
        events[5].cursor,
        Some(json!({ "n": 8 })),
        "where the pause stopped it"
    );
    assert_eq!(events[7].error, None, "a rescue that requeues has no error");
    assert_eq!(
        events[8].error.as_deref(),
        Some("fatal error (no retry): <script>alert(1)</script>"),
        "errors are stored verbatim"
    );
    assert_eq!(
        events[8].cursor,
        Some(json!({ "n": 8 })),
        "a release without progress keeps the cursor"
    );
    for e in &events {
        assert!(e.kind.is_operator() == e.kind.as_str().starts_with("operator_"));
    }

    // limit keeps the newest
    let newest = store
        .job_events(id, 2)
        .await
        .expect("job_events with a limit");
    assert_eq!(
        newest.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![K::OperatorCancel, K::OperatorRetry],
        "limit 2 returns the two newest"
    );

    // a rescue that fails the job records why
    let crashing = insert(store, new_job("crashing")).await;
    let _lost = claim_id(store, "crashing", crashing, SHORT_LEASE).await;
    crash(store, 1).await;
    let events = history(store, crashing).await;
    assert_eq!(summary(&events), vec![(K::Rescued, S::Failed, None)]);
    let message = events[0].error.as_deref().unwrap_or_default();
    assert!(
        message.contains("lost its lease"),
        "a failing rescue records the error: {message:?}"
    );

    // completion writes no event
    let run = claim_id(store, "quiet", quiet, LONG_LEASE).await;
    release(
        store,
        &run,
        Some(&progress(json!(1), 1)),
        Outcome::Completed,
    )
    .await;
    assert!(
        history(store, quiet).await.is_empty(),
        "completion is not an event"
    );
    assert!(
        store
            .job_events(JobId::MAX - 1, 10)
            .await
            .expect("job_events of a missing job")
            .is_empty(),
        "a missing job has no history"
    );
}

/// `worker_beat` records a worker (its presence as written, payloads and all),
/// replaces it on the next beat, `worker_gone` removes it, and a worker silent for
/// longer than [`WORKER_FORGET_MS`](iterjob::store::WORKER_FORGET_MS) is no longer
/// listed.
pub async fn workers_are_seen_replaced_and_forgotten(store: Arc<dyn Store>) {
    use iterjob::store::{WORKER_FORGET_MS, WorkerPresence};
    let mine = |w: Vec<WorkerPresence>| -> Vec<WorkerPresence> {
        w.into_iter()
            .filter(|w| w.id.starts_with("conformance-w"))
            .collect()
    };
    assert!(mine(store.workers().await.expect("workers")).is_empty());
    let now = iterjob::store::now_millis();
    let mut a = WorkerPresence::new("conformance-wa", now);
    a.queues = vec!["default".into(), "<script>alert(1)</script>".into()];
    a.kinds = vec!["import_ünïcode".into()];
    a.concurrency = 8;
    a.beat_every_ms = 5_000;
    let mut b = WorkerPresence::new("conformance-wb", now);
    b.host = "\"><img src=x>".into();
    store.worker_beat(&a).await.expect("beat a");
    store.worker_beat(&b).await.expect("beat b");
    assert_eq!(
        mine(store.workers().await.unwrap()),
        vec![a.clone(), b.clone()]
    );

    a.running = 3;
    a.beat_at = now + 1_000;
    store.worker_beat(&a).await.expect("beat a again");
    let listed = mine(store.workers().await.unwrap());
    assert_eq!(listed.len(), 2, "one row per worker: {listed:?}");
    assert_eq!(listed[0], a, "the last beat replaces the one before");
    assert!(!listed[0].is_silent(now + 1_000));
    assert!(
        listed[0].is_silent(now + 1_000 + 16_000),
        "three intervals missed"
    );

    store.worker_gone(&a.id).await.expect("gone");
    assert_eq!(mine(store.workers().await.unwrap()), vec![b.clone()]);
    store
        .worker_gone("conformance-w-never-seen")
        .await
        .expect("gone twice is fine");

    // a worker silent for longer than a day is forgotten
    b.beat_at = now - WORKER_FORGET_MS - 60_000;
    store.worker_beat(&b).await.expect("an old beat");
    assert!(
        mine(store.workers().await.unwrap()).is_empty(),
        "a worker silent for a day is not listed"
    );
}
