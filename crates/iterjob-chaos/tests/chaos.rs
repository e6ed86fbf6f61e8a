//! Chaos: 4 worker processes walk 50 jobs of 10,000 items (half at-least-once, half
//! exactly-once) while, for 60 s, a random worker is killed every 1–4 s — SIGKILL or
//! SIGTERM at random — and restarted. Afterwards every job is completed and every
//! item logged; the exactly-once kind repeated nothing; the at-least-once kind
//! repeated only what SIGKILLs cut off between checkpoints, never after a SIGTERM.
//!
//! The same scenario runs on PostgreSQL and on MySQL/MariaDB, one after the other
//! (the two tests take turns on a lock: at once, 8 workers on 2 cores would stretch
//! the pacing the bounds are computed from).
//!
//! Soak mode: `ITERJOB_CHAOS_SECS`, `ITERJOB_CHAOS_JOBS`, `ITERJOB_CHAOS_ITEMS` (see
//! the crate docs). This binary must not share its binary with the outage test,
//! which stops the server.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use support::{Cluster, Db, env_number};

const WORKERS: usize = 4;
const CONCURRENCY: u64 = 4;
const CHECKPOINT_MS: u64 = 1000;
const BATCH: u64 = 50;
const PAUSE_MS: u64 = 100;

/// One scenario at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_lose_and_repeat_nothing_they_must_not_on_postgresql() {
    let _turn = TURN.lock().await;
    chaos(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_lose_and_repeat_nothing_they_must_not_on_mysql() {
    let _turn = TURN.lock().await;
    chaos(Db::MySql).await;
}

async fn chaos(db: Db) {
    let secs = env_number("ITERJOB_CHAOS_SECS", 60);
    let jobs = env_number("ITERJOB_CHAOS_JOBS", 50).max(2);
    let items = env_number("ITERJOB_CHAOS_ITEMS", 10_000).max(1);
    let concurrency = CONCURRENCY.to_string();
    let checkpoint = format!("{CHECKPOINT_MS}ms");
    let Some(mut cluster) = Cluster::new(
        db,
        &[
            "--concurrency",
            &concurrency,
            "--lease",
            "2s",
            "--heartbeat-interval",
            "500ms",
            "--checkpoint-interval",
            &checkpoint,
            "--poll-interval",
            "100ms",
            "--split-min-remaining",
            "300",
        ],
    )
    .await
    else {
        return;
    };
    let test_start = Instant::now();

    let params = serde_json::json!({"n": items, "batch": BATCH, "pause_ms": PAUSE_MS});
    // attempts: every SIGKILL costs the jobs it cut off one; a long soak must not run
    // out of them
    let tx_jobs = jobs / 2;
    let plain_jobs = jobs - tx_jobs;
    // A fifth of each kind: twice the items, walked as 2 partitions. They are claimed
    // first, and their partitions queue behind every other job, so they run last, as
    // workers fall idle: the idle workers split them further.
    let double = serde_json::json!({"n": items * 2, "batch": BATCH, "pause_ms": PAUSE_MS});
    for (kind, count) in [("chaos_items", plain_jobs), ("chaos_tx_items", tx_jobs)] {
        let partitioned = count / 5;
        cluster
            .enqueue_partitioned(kind, partitioned as usize, double.clone(), 1000, Some(2))
            .await;
        cluster
            .enqueue(kind, (count - partitioned) as usize, params.clone(), 1000)
            .await;
    }
    for _ in 0..WORKERS {
        cluster.spawn_worker();
    }
    say!(
        "chaos: {} {}, {jobs} jobs x {items} items ({plain_jobs} chaos_items, {tx_jobs} \
         chaos_tx_items), batches of {BATCH} every {PAUSE_MS} ms, {WORKERS} workers x \
         {CONCURRENCY}, chaos for {secs} s",
        db.name(),
        cluster.schema
    );

    // The chaos phase: kill a random worker every 1-4 s and start a new one.
    let chaos_start = Instant::now();
    let mut rng = rand::rng();
    let mut next_kill = chaos_start + Duration::from_millis(rng.random_range(1000..=4000));
    loop {
        let now = Instant::now();
        if now.duration_since(chaos_start) >= Duration::from_secs(secs) {
            break;
        }
        if now < next_kill {
            tokio::time::sleep((next_kill - now).min(Duration::from_millis(200))).await;
            continue;
        }
        let exited = cluster.exited_on_their_own();
        if !exited.is_empty() {
            cluster.dump_logs(40);
            panic!("workers exited on their own: {exited:?}");
        }
        // only workers that have been up a second: their signal handler is installed
        let eligible: Vec<usize> = (0..cluster.workers.len())
            .filter(|&i| cluster.workers[i].started.elapsed() >= Duration::from_secs(1))
            .collect();
        if eligible.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let index = eligible[rng.random_range(0..eligible.len())];
        let signal = if rng.random_bool(0.5) { "KILL" } else { "TERM" };
        let age = cluster.workers[index].started.elapsed();
        let ended = cluster
            .stop_worker(index, signal, true, Duration::from_secs(40))
            .await;
        say!(
            "chaos: t={:5.1}s SIG{signal:<4} worker {} (up {:.1}s): exited after {} ms ({})",
            chaos_start.elapsed().as_secs_f64(),
            ended.pid,
            age.as_secs_f64(),
            ended.exit_after.as_millis(),
            ended
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "did not exit; killed".into())
        );
        cluster.spawn_worker();
        next_kill = Instant::now() + Duration::from_millis(rng.random_range(1000..=4000));
    }
    let chaos_time = chaos_start.elapsed();

    // Drain: no more kills; every job must complete.
    let jobs_total = jobs as i64;
    let ideal_work = Duration::from_millis(
        // (a fifth of the jobs walk twice the items)
        jobs * 6 / 5 * items.div_ceil(BATCH) * PAUSE_MS / (WORKERS as u64 * CONCURRENCY),
    );
    let drain_time = cluster
        .wait_all_completed(jobs_total, Duration::from_secs(120) + ideal_work)
        .await;
    let exited = cluster.exited_on_their_own();
    assert!(exited.is_empty(), "workers exited on their own: {exited:?}");
    cluster.stop_all(Duration::from_secs(40)).await;

    // What happened.
    let sigkills: Vec<u32> = cluster
        .ended
        .iter()
        .filter(|e| e.chaos && e.signal == "KILL")
        .map(|e| e.pid)
        .collect();
    let sigterms = cluster
        .ended
        .iter()
        .filter(|e| e.chaos && e.signal == "TERM")
        .count();
    let fate: BTreeMap<u32, (&str, bool)> = cluster
        .ended
        .iter()
        .map(|e| (e.pid, (e.signal, e.chaos)))
        .collect();
    let stats = cluster.kind_stats().await;
    let repeats = cluster.repeats_by_pid().await;
    let (runs, interruptions, attempts, crashes) = cluster.job_totals().await;
    let log_counts = cluster.log_counts(&[
        "rescued a job whose lease expired",
        "lease lost",
        "heartbeat failed",
        "checkpoint failed",
        "claiming jobs failed",
        "release failed",
        "job error",
    ]);

    let per_job_batches = CHECKPOINT_MS.div_ceil(PAUSE_MS) + 2;
    let per_kill_bound = (CONCURRENCY * per_job_batches * BATCH * 3 / 2) as i64;
    let mut plain_by_cause: BTreeMap<&str, i64> = BTreeMap::new();
    let mut worst_kill = 0i64;
    for ((kind, pid), n) in &repeats {
        let cause = match fate.get(pid) {
            Some(("KILL", true)) => "SIGKILL",
            Some(("TERM", true)) => "SIGTERM",
            Some((_, false)) => "final SIGTERM",
            _ => "unknown process",
        };
        if kind == "chaos_items" {
            *plain_by_cause.entry(cause).or_default() += n;
            if cause == "SIGKILL" {
                worst_kill = worst_kill.max(*n);
            }
        }
    }

    say!("chaos: ===== summary =====");
    say!(
        "chaos: kills: {} SIGKILL, {sigterms} SIGTERM ({} in all) during {:.1}s of chaos",
        sigkills.len(),
        sigkills.len() + sigterms,
        chaos_time.as_secs_f64()
    );
    say!(
        "chaos: runtime: {:.1}s total, chaos {:.1}s, drain {:.1}s after the chaos",
        test_start.elapsed().as_secs_f64(),
        chaos_time.as_secs_f64(),
        drain_time.as_secs_f64()
    );
    for (kind, s) in &stats {
        say!(
            "chaos: {kind}: {} jobs, {} items expected, {} distinct logged, {} missing, {} rows, \
             {} repeats",
            s.jobs,
            s.expected,
            s.distinct,
            s.missing(),
            s.rows,
            s.repeats()
        );
    }
    say!(
        "chaos: chaos_items repeats by cause: {plain_by_cause:?}; worst SIGKILL {worst_kill} \
         (bound per SIGKILL {per_kill_bound} = {CONCURRENCY} jobs x {per_job_batches} batches x \
         {BATCH} items x 1.5)"
    );
    say!(
        "chaos: jobs: {runs} runs, {interruptions} interruptions, {attempts} attempts used, \
         {crashes} crashes outstanding"
    );
    say!(
        "chaos: interruptions by reason: {:?}",
        cluster.interruptions_by_reason().await
    );
    let (parents, partitions) = cluster.partition_counts().await;
    say!(
        "chaos: {parents} partitioned jobs walked as {partitions} partitions ({} from dynamic splits)",
        partitions - parents * 2
    );
    say!("chaos: worker log lines: {log_counts:?}");
    for line in cluster.log_lines("lease lost", 10) {
        say!("chaos:   {line}");
    }

    // The verdict.
    let states = cluster.states().await.expect("states");
    assert_eq!(
        states.get("completed").copied().unwrap_or(0),
        jobs_total,
        "every job completed: {states:?}"
    );
    for e in cluster.ended.iter().filter(|e| e.signal == "TERM") {
        assert!(
            e.status.is_some_and(|s| s.success()),
            "a worker stopped with SIGTERM exits 0: {e:?}"
        );
    }
    for (kind, s) in &stats {
        assert_eq!(s.short_jobs, 0, "{kind}: jobs with an item never logged");
        assert_eq!(s.missing(), 0, "{kind}: items never logged (skipped)");
    }
    assert!(
        partitions >= parents * 2 && parents > 0,
        "partitioned jobs were split: {parents} jobs, {partitions} partitions"
    );
    let tx = stats.get("chaos_tx_items").cloned().unwrap_or_default();
    assert_eq!(tx.repeats(), 0, "chaos_tx_items logged items twice");
    let plain = stats.get("chaos_items").cloned().unwrap_or_default();
    if sigkills.is_empty() {
        assert_eq!(plain.repeats(), 0, "repeats without a SIGKILL");
    }
    for cause in ["SIGTERM", "final SIGTERM", "unknown process"] {
        assert_eq!(
            plain_by_cause.get(cause).copied().unwrap_or(0),
            0,
            "chaos_items repeats charged to a {cause}: a graceful stop must checkpoint"
        );
    }
    for ((kind, pid), n) in &repeats {
        if kind == "chaos_items" && sigkills.contains(pid) {
            assert!(
                *n <= per_kill_bound,
                "SIGKILL of worker {pid} cost {n} repeats, more than {per_kill_bound}"
            );
        }
    }
    assert!(
        plain.repeats() <= per_kill_bound * sigkills.len() as i64,
        "{} repeats for {} SIGKILLs",
        plain.repeats(),
        sigkills.len()
    );
}
