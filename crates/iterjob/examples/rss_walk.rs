//! Peak memory of a long walk: runs one trivial job over `ITEMS` integers
//! (`enumerator::range`) through a [`Worker`] and a [`MemoryStore`], then prints
//! the process's peak RSS (`VmHWM` from `/proc/self/status`), the throughput and
//! how many checkpoints and heartbeats reached the store.
//!
//! The engine keeps no per-item state, so the peak must not grow with the item
//! count: `--compare` runs the walk in two fresh child processes (1M and `ITEMS`
//! items, default 10M) and prints both peaks side by side.
//!
//! ```text
//! cargo run --release -p iterjob --example rss_walk                # 10,000,000 items
//! cargo run --release -p iterjob --example rss_walk -- 1000000     # 1,000,000 items
//! cargo run --release -p iterjob --example rss_walk -- --compare   # 1M vs 10M, each in its own process
//! ```
//!
//! `--current-thread` runs the worker on a current-thread tokio runtime instead of
//! the default multi-threaded one (2 worker threads); see BENCHMARKS.md for what
//! the checkpoint count shows there.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iterjob::enumerator::{self, Enumerator};
use iterjob::store::{
    ClaimRequest, Claimed, Control, JobFilter, JobId, JobRecord, JobState, Outcome, Progress,
    Rescued, RunToken,
};
use iterjob::{
    Job, JobContext, JobError, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};

const DEFAULT_ITEMS: u64 = 10_000_000;
const COMPARE_SMALL: u64 = 1_000_000;
const TARGET_KIB: u64 = 64 * 1024;

/// A trivial job: adds each integer into an atomic.
struct Walk {
    sink: Arc<AtomicU64>,
}

#[derive(Serialize, Deserialize)]
struct Params {
    n: i64,
}

impl Job for Walk {
    const KIND: &'static str = "rss_walk";
    type Params = Params;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..params.n, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Params>, item: i64) -> Result<(), JobError> {
        self.sink
            .fetch_add(std::hint::black_box(item) as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A `MemoryStore` that counts the writes a run makes while it iterates.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    checkpoints: AtomicU64,
    heartbeats: AtomicU64,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn migrate(&self) -> iterjob::Result<()> {
        self.inner.migrate().await
    }
    async fn job_insert_many(&self, jobs: &[NewJob]) -> iterjob::Result<Vec<JobId>> {
        self.inner.job_insert_many(jobs).await
    }
    async fn job_claim(&self, request: &ClaimRequest) -> iterjob::Result<Vec<Claimed>> {
        self.inner.job_claim(request).await
    }
    async fn job_heartbeat(
        &self,
        id: JobId,
        token: RunToken,
        lease: Duration,
    ) -> iterjob::Result<Control> {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.inner.job_heartbeat(id, token, lease).await
    }
    async fn job_note_failure(
        &self,
        id: JobId,
        token: RunToken,
        failure: &iterjob::Failure,
    ) -> iterjob::Result<()> {
        self.inner.job_note_failure(id, token, failure).await
    }
    async fn job_checkpoint(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        lease: Duration,
    ) -> iterjob::Result<Control> {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.inner.job_checkpoint(id, token, progress, lease).await
    }
    async fn job_release(
        &self,
        id: JobId,
        token: RunToken,
        progress: Option<&Progress>,
        outcome: &Outcome,
    ) -> iterjob::Result<()> {
        self.inner.job_release(id, token, progress, outcome).await
    }
    async fn job_rescue_expired(&self, max_crashes: u32) -> iterjob::Result<Vec<Rescued>> {
        self.inner.job_rescue_expired(max_crashes).await
    }
    async fn job_get(&self, id: JobId) -> iterjob::Result<Option<JobRecord>> {
        self.inner.job_get(id).await
    }
    async fn job_list(&self, filter: &JobFilter) -> iterjob::Result<Vec<JobRecord>> {
        self.inner.job_list(filter).await
    }
    async fn job_count_by_state(&self) -> iterjob::Result<Vec<(JobState, u64)>> {
        self.inner.job_count_by_state().await
    }
    async fn worker_beat(&self, presence: &iterjob::store::WorkerPresence) -> iterjob::Result<()> {
        self.inner.worker_beat(presence).await
    }
    async fn worker_gone(&self, id: &str) -> iterjob::Result<()> {
        self.inner.worker_gone(id).await
    }
    async fn workers(&self) -> iterjob::Result<Vec<iterjob::store::WorkerPresence>> {
        self.inner.workers().await
    }

    async fn job_count_top_level_by_state(&self) -> iterjob::Result<Vec<(JobState, u64)>> {
        self.inner.job_count_top_level_by_state().await
    }
    async fn job_pause(&self, id: JobId) -> iterjob::Result<JobRecord> {
        self.inner.job_pause(id).await
    }
    async fn job_resume(&self, id: JobId) -> iterjob::Result<JobRecord> {
        self.inner.job_resume(id).await
    }
    async fn job_cancel(&self, id: JobId) -> iterjob::Result<JobRecord> {
        self.inner.job_cancel(id).await
    }
    async fn job_delete(&self, id: JobId) -> iterjob::Result<u64> {
        self.inner.job_delete(id).await
    }
    async fn job_prune(
        &self,
        state: iterjob::JobState,
        finished_before: iterjob::store::Millis,
        after: iterjob::JobId,
        limit: usize,
    ) -> iterjob::Result<iterjob::store::PruneBatch> {
        self.inner
            .job_prune(state, finished_before, after, limit)
            .await
    }
    async fn job_prunable(
        &self,
        state: iterjob::JobState,
        finished_before: iterjob::store::Millis,
    ) -> iterjob::Result<u64> {
        self.inner.job_prunable(state, finished_before).await
    }

    async fn schedule_tick(
        &self,
        tick: &iterjob::store::ScheduleTick,
    ) -> iterjob::Result<iterjob::store::TickOutcome> {
        self.inner.schedule_tick(tick).await
    }

    async fn schedule_states(&self) -> iterjob::Result<Vec<iterjob::store::ScheduleState>> {
        self.inner.schedule_states().await
    }

    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> iterjob::Result<bool> {
        self.inner.lease_acquire(name, holder, ttl).await
    }

    async fn lease_release(&self, name: &str, holder: &str) -> iterjob::Result<()> {
        self.inner.lease_release(name, holder).await
    }

    async fn queue_pause(
        &self,
        queue: &str,
        mode: iterjob::store::QueuePauseMode,
    ) -> iterjob::Result<iterjob::store::QueuePause> {
        self.inner.queue_pause(queue, mode).await
    }

    async fn queue_resume(&self, queue: &str) -> iterjob::Result<bool> {
        self.inner.queue_resume(queue).await
    }

    async fn queue_pauses(&self) -> iterjob::Result<Vec<iterjob::store::QueuePause>> {
        self.inner.queue_pauses().await
    }

    async fn throttle_on(
        &self,
        switch: &iterjob::ThrottleSwitch,
    ) -> iterjob::Result<iterjob::ThrottleSwitch> {
        self.inner.throttle_on(switch).await
    }

    async fn throttle_off(&self, queue: Option<&str>, kind: Option<&str>) -> iterjob::Result<bool> {
        self.inner.throttle_off(queue, kind).await
    }

    async fn throttle_switches(
        &self,
        now: iterjob::store::Millis,
    ) -> iterjob::Result<Vec<iterjob::ThrottleSwitch>> {
        self.inner.throttle_switches(now).await
    }

    async fn queue_rows(
        &self,
        now: iterjob::store::Millis,
    ) -> iterjob::Result<Vec<iterjob::store::QueueRow>> {
        self.inner.queue_rows(now).await
    }
    async fn job_retry(&self, id: JobId) -> iterjob::Result<JobRecord> {
        self.inner.job_retry(id).await
    }
    async fn job_partition(
        &self,
        id: JobId,
        token: RunToken,
        children: &[serde_json::Value],
    ) -> iterjob::Result<Vec<JobId>> {
        self.inner.job_partition(id, token, children).await
    }
    async fn job_split(
        &self,
        id: JobId,
        token: RunToken,
        progress: &Progress,
        split: Option<&iterjob::store::Split>,
        lease: Duration,
    ) -> iterjob::Result<Option<JobId>> {
        self.inner
            .job_split(id, token, progress, split, lease)
            .await
    }
    async fn job_request_split(
        &self,
        request: &iterjob::store::SplitRequest,
    ) -> iterjob::Result<Option<JobId>> {
        self.inner.job_request_split(request).await
    }
    async fn job_partitions(&self, parent: JobId) -> iterjob::Result<Vec<JobRecord>> {
        self.inner.job_partitions(parent).await
    }
    async fn job_events(
        &self,
        id: JobId,
        limit: usize,
    ) -> iterjob::Result<Vec<iterjob::store::JobEvent>> {
        self.inner.job_events(id, limit).await
    }
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Walks `items` items once; prints a human line and a `RESULT` line.
fn walk(items: u64, current_thread: bool) {
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let flavor = if current_thread {
        "current_thread"
    } else {
        "multi_thread(2)"
    };
    let sink = Arc::new(AtomicU64::new(0));
    let store = Arc::new(CountingStore::default());
    let (elapsed, report, hwm_before) = runtime.block_on({
        let store = Arc::clone(&store);
        let sink = Arc::clone(&sink);
        async move {
            let job = Walk { sink };
            let n = i64::try_from(items).expect("item count fits in i64");
            let new = NewJob::of(&job, &Params { n }).expect("params serialize");
            store.job_insert(&new).await.expect("enqueue");
            let mut config = WorkerConfig::default();
            config.concurrency = 1;
            let store: Arc<dyn Store> = store;
            let worker = Worker::new(store, Registry::new().with(job), config).expect("config");
            let hwm_before = status_kib("VmHWM");
            let started = Instant::now();
            let report = worker.run_until_idle().await.expect("worker");
            (started.elapsed(), report, hwm_before)
        }
    });
    let hwm = status_kib("VmHWM");
    let rss = status_kib("VmRSS");
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.items, items, "{report:?}");
    let expected = (0..items).fold(0u64, |a, i| a.wrapping_add(i));
    assert_eq!(
        sink.load(Ordering::Relaxed),
        expected,
        "every item processed"
    );
    let per_s = items as f64 / elapsed.as_secs_f64();
    let checkpoints = store.checkpoints.load(Ordering::Relaxed);
    let heartbeats = store.heartbeats.load(Ordering::Relaxed);
    println!(
        "rss_walk: {items} items on {flavor} in {:.3} s = {:.1} M items/s ({:.2} ns/item); \
         checkpoints {checkpoints}, heartbeats {heartbeats}",
        elapsed.as_secs_f64(),
        per_s / 1e6,
        1e9 / per_s,
    );
    println!(
        "rss_walk: peak RSS (VmHWM) {:.2} MiB (before the walk {:.2} MiB, RSS now {:.2} MiB); \
         target < 64 MiB: {}",
        mib(hwm),
        mib(hwm_before),
        mib(rss),
        if hwm < TARGET_KIB { "MET" } else { "MISSED" }
    );
    println!(
        "RESULT items={items} hwm_kib={hwm} hwm_before_kib={hwm_before} secs={:.6} items_per_s={per_s:.0} checkpoints={checkpoints}",
        elapsed.as_secs_f64()
    );
}

/// Runs the walk in a child process and returns its `RESULT` fields.
fn child(items: u64, current_thread: bool) -> Vec<(String, String)> {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.arg(items.to_string());
    if current_thread {
        cmd.arg("--current-thread");
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("child printed RESULT");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field(fields: &[(String, String)], name: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in child RESULT"))
}

fn main() {
    let mut items = None;
    let mut compare = false;
    let mut current_thread = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--compare" => compare = true,
            "--current-thread" => current_thread = true,
            n => {
                let n = n.replace('_', "");
                items = Some(n.parse::<u64>().unwrap_or_else(|_| {
                    eprintln!(
                        "usage: rss_walk [ITEMS] [--compare] [--current-thread]  (got {arg:?})"
                    );
                    std::process::exit(2)
                }));
            }
        }
    }
    let items = items.unwrap_or(DEFAULT_ITEMS);
    if !compare {
        walk(items, current_thread);
        return;
    }
    let small = child(COMPARE_SMALL, current_thread);
    let large = child(items, current_thread);
    let (hs, hl) = (field(&small, "hwm_kib"), field(&large, "hwm_kib"));
    let (ps, pl) = (field(&small, "items_per_s"), field(&large, "items_per_s"));
    let extra_items = items.saturating_sub(COMPARE_SMALL).max(1) as f64;
    println!();
    println!(
        "compare: peak RSS {:.2} MiB at {COMPARE_SMALL} items vs {:.2} MiB at {items} items: \
         {:+.1} KiB ({:+.4} bytes per extra item); ratio {:.3}",
        hs / 1024.0,
        hl / 1024.0,
        hl - hs,
        (hl - hs) * 1024.0 / extra_items,
        hl / hs,
    );
    println!(
        "compare: {:.1} vs {:.1} M items/s; {} and {}",
        ps / 1e6,
        pl / 1e6,
        if hl < TARGET_KIB as f64 {
            "under 64 MiB"
        } else {
            "OVER 64 MiB"
        },
        if hl - hs < 1024.0 {
            "flat (< 1 MiB growth)"
        } else {
            "NOT flat"
        }
    );
}
