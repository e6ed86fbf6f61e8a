//! `iterjob demo` end to end: interrupted, then resumed to completion, every product
//! synced exactly once.

mod support;

use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_interrupted_then_resumed_syncs_every_product_once() {
    let sandbox = Sandbox::new();

    let first = sandbox.run(&[
        "demo",
        "--products",
        "10000",
        "--api-latency",
        "20ms",
        "--interrupt-after",
        "1s",
    ]);
    let out = stdout(&first);
    assert!(
        first.status.success(),
        "first run exits 0: {out} {}",
        stderr(&first)
    );
    assert!(out.contains("creating 10000 products"), "{out}");
    assert!(
        out.contains("interrupted: job 1 checkpointed at cursor"),
        "{out}"
    );
    assert!(out.contains("run `iterjob demo` again"), "{out}");
    assert!(
        sandbox.db().exists(),
        "the demo created iterjob.db in the current directory"
    );

    let pool = SqlitePoolOptions::new()
        .connect(&sandbox.db_url())
        .await
        .expect("open demo db");
    let (done_after_first,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM demo_products WHERE sync_count > 0")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert!(
        done_after_first > 0 && done_after_first < 10000,
        "partly done: {done_after_first}"
    );

    let second = sandbox.run(&["demo"]);
    let out = stdout(&second);
    assert!(
        second.status.success(),
        "second run exits 0: {out} {}",
        stderr(&second)
    );
    assert!(
        out.contains("resuming demo job 1"),
        "it resumed the same job: {out}"
    );
    assert!(
        out.contains("demo job 1 completed: 10000 products synced (0 more than once)"),
        "{out}"
    );
    assert!(
        out.contains("1 interruption, 2 runs, 0 failed attempts"),
        "{out}"
    );

    let (synced, repeated, max): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sync_count = 1), COUNT(*) FILTER (WHERE sync_count > 1), MAX(sync_count) FROM demo_products",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!((synced, repeated, max), (10000, 0, 1));

    let jobs = sandbox.run(&["jobs", "--json"]);
    assert!(jobs.status.success());
    let list: serde_json::Value = serde_json::from_slice(&jobs.stdout).expect("json");
    let job = &list[0];
    assert_eq!(job["state"], "completed");
    assert_eq!(job["items_done"], 10000);
    assert_eq!(job["items_total"], 10000);
    assert_eq!(job["interruptions"], 1);
    assert_eq!(job["attempts"], 0);
    assert!(
        job["cursor"].is_array() || job["cursor"].is_object(),
        "cursor present: {job}"
    );
    assert!(job.get("last_error").is_some());
}

/// `iterjob worker --until-idle` with short time slices: the job goes back to its
/// queue at the end of each slice, and the worker must claim it again rather than
/// conclude there is nothing left (before, a claim in flight while the run ended
/// found nothing and the worker exited with the job queued half-way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_until_idle_with_time_slices_finishes_the_job() {
    for round in 0..3 {
        let sandbox = Sandbox::new();
        let setup = sandbox.run(&[
            "demo",
            "--products",
            "3000",
            "--api-latency",
            "10ms",
            "--interrupt-after",
            "200ms",
        ]);
        assert!(setup.status.success(), "{}", stderr(&setup));
        let out = sandbox.run(&[
            "worker",
            "--until-idle",
            "--max-runtime",
            "150ms",
            "--poll-interval",
            "20ms",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let show = stdout(&sandbox.run(&["show", "1"]));
        assert!(
            show.contains("completed"),
            "round {round}: the worker returned with the job unfinished:\n{show}\n{}",
            stderr(&out)
        );
    }
}

/// `iterjob delete`: refused (exit 1, one line saying what to do) while the job may
/// run and for a partition alone; a paused partitioned job goes with its partitions
/// and their history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_what_may_run_and_takes_partitions_along() {
    let sandbox = Sandbox::new();
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "20000",
        "--api-latency",
        "10ms",
        "--partitions",
        "2",
        "--interrupt-after",
        "300ms",
    ]);
    assert!(setup.status.success(), "{}", stderr(&setup));
    // interrupted: every partition waits, so the parent shows queued, not running
    let shown = sandbox.run(&["show", "1", "--json"]);
    let job: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(job["state"], "queued", "{job}");
    assert!(
        job["rate_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{job}"
    );
    let listed = sandbox.run(&["jobs", "--state", "running", "--json"]);
    assert_eq!(stdout(&listed).trim(), "[]", "nothing runs");
    support::assert_error(
        &sandbox.run(&["delete", "1"]),
        1,
        &["job 1", "cannot delete it", "cancel or pause"],
    );
    support::assert_error(
        &sandbox.run(&["delete", "2"]),
        1,
        &["job 2", "partition of another job", "delete that job"],
    );
    let paused = sandbox.run(&["pause", "1"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let deleted = sandbox.run(&["delete", "1"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(
        stdout(&deleted).trim(),
        "job 1 and its 2 partitions deleted, with their history"
    );
    let jobs = sandbox.run(&["jobs", "--json"]);
    assert_eq!(stdout(&jobs).trim(), "[]", "no job left");
    support::assert_error(&sandbox.run(&["delete", "1"]), 1, &["job 1 not found"]);
}

/// `iterjob worker --exit-when-idle 2s`: works through the queue, picks up a job
/// enqueued during the grace (the count starts again), and exits 0 once nothing
/// was claimable for the whole grace, with nothing left queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_exit_when_idle_drains_then_exits_after_the_grace() {
    let sandbox = Sandbox::new();
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "2000",
        "--api-latency",
        "5ms",
        "--interrupt-after",
        "200ms",
    ]);
    assert!(setup.status.success(), "{}", stderr(&setup));
    let start = std::time::Instant::now();
    let mut worker = sandbox
        .cmd(&[
            "worker",
            "--exit-when-idle",
            "2s",
            "--poll-interval",
            "50ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn worker");
    // job 1 finishes; then, within the grace, a second job arrives
    let done = |id: &str| stdout(&sandbox.run(&["show", id])).contains("completed");
    while !done("1") {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "job 1 not done"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "still within the grace"
    );
    let url = format!("{{\"database_url\":\"{}\"}}", sandbox.db_url());
    let enqueued = sandbox.run(&["enqueue", "demo_sync_products", "--params", &url]);
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let second_at = std::time::Instant::now();
    let status = worker.wait().expect("wait");
    let idle_for = second_at.elapsed();
    assert!(status.success(), "exit 0");
    assert!(done("2"), "the job enqueued during the grace was done");
    assert!(
        idle_for >= std::time::Duration::from_secs(2),
        "exited only after a whole grace without work ({idle_for:?})"
    );
}

/// `iterjob prune`: a dry run counts, a cutoff in the past keeps recent jobs, and a
/// prune deletes finished jobs with their partitions in batches; a state that may
/// still run is refused by the argument parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_counts_then_deletes_finished_jobs_with_their_partitions() {
    let sandbox = Sandbox::new();
    for args in [
        &["demo", "--products", "300", "--api-latency", "1ms"][..],
        &[
            "demo",
            "--products",
            "300",
            "--api-latency",
            "1ms",
            "--partitions",
            "3",
        ][..],
    ] {
        let out = sandbox.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let dry = sandbox.run(&["prune", "--older-than", "0s", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("2 completed jobs finished more than 0s ago")
            && stdout(&dry).contains("dry run: 2 jobs would be deleted"),
        "{}",
        stdout(&dry)
    );
    let kept = sandbox.run(&["prune", "--older-than", "1h"]);
    assert!(
        stdout(&kept).contains("deleted 0 jobs"),
        "{}",
        stdout(&kept)
    );
    let all = sandbox.run(&["jobs", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&all)).unwrap();
    assert_eq!(listed.len(), 5, "2 jobs and 3 partitions, all kept");
    let pruned = sandbox.run(&["prune", "--older-than", "0s", "--batch", "1"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stdout(&pruned).contains("deleted 2 jobs"),
        "{}",
        stdout(&pruned)
    );
    assert_eq!(stdout(&sandbox.run(&["jobs", "--json"])).trim(), "[]");
    support::assert_error(
        &sandbox.run(&["prune", "--older-than", "0s", "--state", "running"]),
        2,
        &["not a finished state"],
    );
}

/// `iterjob queue pause|resume` and `iterjob queues`: a worker started while its
/// queue is paused runs nothing of it (and exits when idle); `queues --json` shows
/// the job held by the pause; once resumed, the next worker runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_holds_its_jobs_until_resumed() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["demo", "--products", "200", "--api-latency", "1ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "1", "--json"]))).unwrap();
    let params = first["params"].to_string();

    let paused = sandbox.run(&["queue", "pause", "default"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    assert!(
        stdout(&paused).contains("queue default paused"),
        "{}",
        stdout(&paused)
    );
    let typo = sandbox.run(&["queue", "pause", "defualt"]);
    assert!(
        stderr(&typo).contains("no job is in queue defualt (queues with jobs: default)"),
        "{}",
        stderr(&typo)
    );
    assert!(
        sandbox
            .run(&["queue", "resume", "defualt"])
            .status
            .success()
    );

    let enqueued = sandbox.run(&["enqueue", "demo_sync_products", "--params", &params]);
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let worker = sandbox.run(&["worker", "--exit-when-idle", "1s"]);
    assert!(worker.status.success(), "{}", stderr(&worker));
    let job: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "2", "--json"]))).unwrap();
    assert_eq!(job["state"], "queued", "nothing starts in a paused queue");

    let queues: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["queues", "--json"]))).unwrap();
    let queues = queues.as_array().unwrap();
    assert_eq!(queues.len(), 1, "{queues:?}");
    let default = &queues[0];
    assert_eq!(default["queue"], "default");
    assert_eq!(default["paused"]["mode"], "interrupt");
    assert_eq!(
        (default["waiting"].as_u64(), default["held"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(default["counts"]["completed"], 1);
    let table = stdout(&sandbox.run(&["queues"]));
    assert!(
        table.contains("QUEUE") && table.contains("1 held"),
        "{table}"
    );

    let resumed = sandbox.run(&["queue", "resume", "default"]);
    assert!(
        stdout(&resumed).contains("queue default resumed"),
        "{}",
        stdout(&resumed)
    );
    let again = sandbox.run(&["queue", "resume", "default"]);
    assert!(
        stdout(&again).contains("was not paused"),
        "{}",
        stdout(&again)
    );
    let worker = sandbox.run(&["worker", "--exit-when-idle", "1s"]);
    assert!(worker.status.success(), "{}", stderr(&worker));
    let job: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "2", "--json"]))).unwrap();
    assert_eq!(job["state"], "completed");
}

/// Retention by the worker: `--keep-completed forever` keeps the finished demo job,
/// `--keep-completed 0s` deletes it (with its history) within the worker's life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_prunes_finished_jobs_past_their_age() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["demo", "--products", "200", "--api-latency", "1ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept = sandbox.run(&[
        "worker",
        "--keep-completed",
        "forever",
        "--exit-when-idle",
        "3s",
    ]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert!(
        sandbox.run(&["show", "1"]).status.success(),
        "kept for ever"
    );
    let pruned = sandbox.run(&["worker", "--keep-completed", "0s", "--exit-when-idle", "3s"]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    support::assert_error(&sandbox.run(&["show", "1"]), 1, &["job 1"]);
    support::assert_error(
        &sandbox.run(&["worker", "--keep-failed", "soon"]),
        2,
        &["`soon` is not a duration"],
    );
}
