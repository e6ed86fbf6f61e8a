//! A rate limit shared by real worker processes: 3 `iterjob-pace` workers (2 jobs
//! each) on one PostgreSQL schema, and separately 3 on one SQLite file, walk jobs of
//! the kind `paced_items`, limited to 200 items per second in total. Measured from
//! the timestamps the kind logs, the rate over the steady part of the run must be
//! within 10 % of the limit, and every process must have done part of the work (the
//! limit is shared, not per process: each alone would be allowed the full 200/s).
//!
//! The PostgreSQL test needs the server of `ITERJOB_TEST_PG_URL`; when it cannot be
//! reached the test fails if `CI` is set and is skipped otherwise.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{drop_schema, pg_url, require_pg, send, with_schema};

/// The shared limit, items per second.
const RATE: u64 = 200;
/// Items per call of the work (each counts against the limit).
const BATCH: usize = 4;
/// Worker processes.
const PROCESSES: usize = 3;
/// Jobs per process at once.
const CONCURRENCY: usize = 2;
/// How long the workers run.
const RUN: Duration = Duration::from_secs(9);
/// Left out of the measurement at the start (processes starting, claiming) and end.
const WARM_UP: Duration = Duration::from_secs(2);
const COOL_DOWN: Duration = Duration::from_secs(1);

fn pace_command(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iterjob-pace"));
    command
        .env("ITERJOB_DATABASE_URL", url)
        .env("ITERJOB_PACE_RATE", RATE.to_string())
        .env_remove("ITERJOB_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Kills the workers still running when dropped (a failed test leaves none behind).
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Enqueues the jobs, runs the workers for [`RUN`], stops them with SIGTERM, and
/// checks the rate they achieved together. `what` names the store in messages.
fn run_and_measure(url: &str, what: &str) {
    let logs = tempfile::tempdir().expect("tempdir");
    let params = serde_json::json!({
        "n": 1_000_000,
        "batch": BATCH,
        "log_dir": logs.path(),
    })
    .to_string();
    for _ in 0..PROCESSES * CONCURRENCY {
        let out = pace_command(url)
            .args(["enqueue", "paced_items", "--params", &params])
            .output()
            .expect("run iterjob-pace enqueue");
        assert!(
            out.status.success(),
            "{what}: enqueue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut workers = Workers(Vec::new());
    for i in 0..PROCESSES {
        let log = std::fs::File::create(logs.path().join(format!("worker-{i}.stderr")))
            .expect("worker stderr file");
        let child = pace_command(url)
            .args([
                "worker",
                "--concurrency",
                &CONCURRENCY.to_string(),
                "--poll-interval",
                "100ms",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start an iterjob-pace worker");
        workers.0.push(child);
    }
    std::thread::sleep(RUN);
    for child in &workers.0 {
        send(child.id(), "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for child in &mut workers.0 {
        loop {
            match child.try_wait().expect("wait for a worker") {
                Some(status) => {
                    assert!(status.success(), "{what}: a worker exited with {status}");
                    break;
                }
                None if Instant::now() > deadline => {
                    panic!("{what}: a worker did not stop within 20 s of SIGTERM")
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    let batches = read_logs(logs.path());
    let first = batches.values().flatten().map(|(at, _)| *at).min();
    let last = batches.values().flatten().map(|(at, _)| *at).max();
    let (Some(first), Some(last)) = (first, last) else {
        panic!(
            "{what}: no item was processed; worker logs in {}: {}",
            logs.path().display(),
            worker_stderr(logs.path())
        );
    };
    let from = first + micros(WARM_UP);
    let to = last - micros(COOL_DOWN);
    assert!(
        to - from >= 4_000_000,
        "{what}: the workers ran only {:.1} s",
        (last - first) as f64 / 1e6
    );
    let seconds = (to - from) as f64 / 1e6;
    let in_window = |entries: &Vec<(i64, u64)>| -> u64 {
        entries
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, n)| n)
            .sum()
    };
    let total: u64 = batches.values().map(in_window).sum();
    let rate = total as f64 / seconds;
    let shares: Vec<String> = batches
        .values()
        .map(|e| format!("{:.1}/s", in_window(e) as f64 / seconds))
        .collect();
    eprintln!(
        "{what}: limit {RATE}/s shared by {PROCESSES} processes x {CONCURRENCY} jobs: \
         measured {rate:.1} items/s over {seconds:.1} s (per process: {})",
        shares.join(", ")
    );
    let (low, high) = (RATE as f64 * 0.9, RATE as f64 * 1.1);
    assert!(
        (low..=high).contains(&rate),
        "{what}: {PROCESSES} processes sharing a limit of {RATE} items/s achieved \
         {rate:.1} items/s together (per process: {}); expected within 10 %",
        shares.join(", ")
    );
    assert_eq!(
        batches.len(),
        PROCESSES,
        "{what}: every worker process did part of the work"
    );
    for (pid, entries) in &batches {
        assert!(
            in_window(entries) > 0,
            "{what}: process {pid} processed nothing in the measured window"
        );
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).expect("short duration")
}

/// The timestamp logs: pid → (µs, items) per batch.
fn read_logs(dir: &Path) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut logs = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read the log directory") {
        let path = entry.expect("log entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let pid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read a log");
        let entries = text
            .lines()
            .filter_map(|line| {
                let (at, n) = line.split_once(' ')?;
                Some((at.parse().ok()?, n.parse().ok()?))
            })
            .collect();
        logs.insert(pid, entries);
    }
    logs
}

fn worker_stderr(dir: &Path) -> String {
    (0..PROCESSES)
        .map(|i| {
            std::fs::read_to_string(dir.join(format!("worker-{i}.stderr"))).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn shared_rate_limit_holds_across_processes_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if !runtime.block_on(require_pg()) {
        return;
    }
    let schema = format!("iterjob_pace_{:016x}", rand::random::<u64>());
    struct DropSchema(String);
    impl Drop for DropSchema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _cleanup = DropSchema(schema.clone());
    run_and_measure(&with_schema(&pg_url(), &schema), "PostgreSQL");
}

#[test]
fn shared_rate_limit_holds_across_processes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    run_and_measure(&url, "SQLite");
}
