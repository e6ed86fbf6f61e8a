//! Engine overhead per item versus a plain async loop.
//!
//! Every variant walks the same `N` integers and does the same trivial work per
//! item (a `black_box`ed relaxed `fetch_add` into an atomic), inside the same
//! multi-threaded tokio runtime (2 worker threads), in a spawned task:
//!
//! - `plain_loop`: `for i in 0..N { process(i).await }` — the baseline.
//! - `plain_stream`: the same loop driven by `enumerator::range(0..N, None)`
//!   through `StreamExt::next` — the enumerator's share of the overhead.
//! - `plain_loop_coop`: the baseline plus `tokio::task::coop::consume_budget()`
//!   per item — the cost of making the run loop yield cooperatively (see
//!   BENCHMARKS.md).
//! - `plain_loop_timed_yield`: the baseline plus the suggested fix — every 32
//!   items read the clock, and yield if 2 ms passed since the last yield.
//! - `worker_range`: a [`Job`] over `enumerator::range(0..N, cursor)`, enqueued in a
//!   [`MemoryStore`] and run by a [`Worker`] (`run_until_idle`, concurrency 1,
//!   default 1 s checkpoint interval) — the whole path a user gets, including
//!   enqueue, claim, the supervisor task and the final release.
//! - `worker_range_batched100`: the same job with `.batched(100)`; `process`
//!   loops over the batch and `count_items` returns its length.
//!
//! Criterion reports each variant's time per `N` items and throughput in
//! elements/s. After the criterion groups, an interleaved side-by-side pass (all
//! variants in turn, `ROUNDS` rounds, medians) prints ns per item and the overhead
//! per item over `plain_loop`, which is robust to the drift of a noisy machine.
//! Skip that pass with `ITERJOB_BENCH_SUMMARY=0`.
//!
//! ```text
//! cargo bench -p iterjob --bench engine
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::{
    Job, JobContext, JobError, MemoryStore, NewJob, Registry, Store, Worker, WorkerConfig,
};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

/// Items per walk: large enough that enqueue, claim and release amortize.
const N: i64 = 1_000_000;
/// Batch size of the batched variant.
const BATCH: usize = 100;
/// Rounds of the interleaved side-by-side pass.
const ROUNDS: usize = 15;

/// The trivial work, identical in every variant.
#[inline]
fn work(sink: &AtomicU64, i: i64) {
    sink.fetch_add(black_box(i) as u64, Ordering::Relaxed);
}

/// The trivial work, as an async step (what the plain loop awaits).
async fn process(sink: &AtomicU64, i: i64) {
    work(sink, i);
}

#[derive(Serialize, Deserialize)]
struct Params {
    n: i64,
}

/// One item per step.
struct Trivial {
    sink: Arc<AtomicU64>,
}

impl Job for Trivial {
    const KIND: &'static str = "bench_trivial";
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
        process(&self.sink, item).await;
        Ok(())
    }
}

/// Batches of `BATCH` items per step.
struct TrivialBatched {
    sink: Arc<AtomicU64>,
}

impl Job for TrivialBatched {
    const KIND: &'static str = "bench_trivial_batched";
    type Params = Params;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &Params,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        Ok(enumerator::range(0..params.n, cursor).batched(BATCH))
    }

    async fn process(&self, _ctx: &JobContext<Params>, batch: Vec<i64>) -> Result<(), JobError> {
        for i in batch {
            process(&self.sink, i).await;
        }
        Ok(())
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn plain_loop(rt: &Runtime, n: i64) -> u64 {
    rt.block_on(async move {
        tokio::spawn(async move {
            let sink = AtomicU64::new(0);
            for i in 0..n {
                process(&sink, i).await;
            }
            sink.into_inner()
        })
        .await
        .expect("join")
    })
}

fn plain_stream(rt: &Runtime, n: i64) -> u64 {
    rt.block_on(async move {
        tokio::spawn(async move {
            let sink = AtomicU64::new(0);
            let mut items = std::pin::pin!(enumerator::range(0..n, None));
            while let Some(step) = items.next().await {
                let (i, _cursor) = step.expect("range never fails");
                process(&sink, i).await;
            }
            sink.into_inner()
        })
        .await
        .expect("join")
    })
}

fn plain_loop_coop(rt: &Runtime, n: i64) -> u64 {
    rt.block_on(async move {
        tokio::spawn(async move {
            let sink = AtomicU64::new(0);
            for i in 0..n {
                tokio::task::coop::consume_budget().await;
                process(&sink, i).await;
            }
            sink.into_inner()
        })
        .await
        .expect("join")
    })
}

/// The suggested run-loop fix, on the plain loop: every `YIELD_CHECK_EVERY`
/// items, read the clock and yield to the scheduler if `YIELD_AFTER` has passed
/// since the last yield.
fn plain_loop_timed_yield(rt: &Runtime, n: i64) -> u64 {
    const YIELD_CHECK_EVERY: u32 = 32;
    const YIELD_AFTER: Duration = Duration::from_millis(2);
    rt.block_on(async move {
        tokio::spawn(async move {
            let sink = AtomicU64::new(0);
            let mut since_check = 0u32;
            let mut last_yield = Instant::now();
            for i in 0..n {
                process(&sink, i).await;
                since_check += 1;
                if since_check >= YIELD_CHECK_EVERY {
                    since_check = 0;
                    if last_yield.elapsed() >= YIELD_AFTER {
                        tokio::task::yield_now().await;
                        last_yield = Instant::now();
                    }
                }
            }
            sink.into_inner()
        })
        .await
        .expect("join")
    })
}

/// Enqueues one job of kind `J` over `0..n` in a fresh `MemoryStore` and runs a
/// worker until idle. Returns the sum the job accumulated.
fn worker_run<J: Job<Params = Params>>(
    rt: &Runtime,
    n: i64,
    make: impl FnOnce(Arc<AtomicU64>) -> J,
) -> u64 {
    let sink = Arc::new(AtomicU64::new(0));
    let job = make(Arc::clone(&sink));
    rt.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let new = NewJob::of(&job, &Params { n }).expect("params serialize");
        store.job_insert(&new).await.expect("enqueue");
        let mut config = WorkerConfig::default();
        config.concurrency = 1;
        let worker = Worker::new(store, Registry::new().with(job), config).expect("config");
        let report = worker.run_until_idle().await.expect("worker");
        assert_eq!(report.completed, 1, "{report:?}");
        assert_eq!(report.items, n as u64, "{report:?}");
    });
    sink.load(Ordering::Relaxed)
}

fn worker_range(rt: &Runtime, n: i64) -> u64 {
    worker_run(rt, n, |sink| Trivial { sink })
}

fn worker_range_batched(rt: &Runtime, n: i64) -> u64 {
    worker_run(rt, n, |sink| TrivialBatched { sink })
}

type Variant = (&'static str, fn(&Runtime, i64) -> u64);

const VARIANTS: [Variant; 6] = [
    ("plain_loop", plain_loop),
    ("plain_stream", plain_stream),
    ("plain_loop_coop", plain_loop_coop),
    ("plain_loop_timed_yield", plain_loop_timed_yield),
    ("worker_range", worker_range),
    ("worker_range_batched100", worker_range_batched),
];

fn benches(c: &mut Criterion, rt: &Runtime) {
    let expected = (0..N).sum::<i64>() as u64;
    let mut group = c.benchmark_group("engine_per_item");
    group.throughput(Throughput::Elements(N as u64));
    for (name, f) in VARIANTS {
        assert_eq!(f(rt, N), expected, "{name} did all the work");
        group.bench_function(name, |b| b.iter(|| black_box(f(rt, black_box(N)))));
    }
    group.finish();
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// All variants in turn, `ROUNDS` times; prints medians, overhead and ratios.
fn side_by_side(rt: &Runtime) {
    let mut ns_per_item: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); VARIANTS.len()];
    for (_, f) in VARIANTS {
        black_box(f(rt, N)); // warm up
    }
    for _ in 0..ROUNDS {
        for (k, (_, f)) in VARIANTS.iter().enumerate() {
            let t = Instant::now();
            black_box(f(rt, black_box(N)));
            ns_per_item[k].push(t.elapsed().as_nanos() as f64 / N as f64);
        }
    }
    let medians: Vec<f64> = ns_per_item.iter_mut().map(|v| median(v)).collect();
    let base = medians[0];
    println!();
    println!(
        "side by side, interleaved: {ROUNDS} rounds x {N} items, medians ({} worker threads)",
        2
    );
    println!(
        "{:<26} {:>10} {:>14} {:>8} {:>10}",
        "variant", "ns/item", "overhead ns", "ratio", "Mitems/s"
    );
    for ((name, _), m) in VARIANTS.iter().zip(&medians) {
        println!(
            "{:<26} {:>10.2} {:>14.2} {:>8.2} {:>10.1}",
            name,
            m,
            m - base,
            m / base,
            1e3 / m
        );
    }
    let of = |name: &str| {
        let k = VARIANTS
            .iter()
            .position(|(n, _)| *n == name)
            .expect("variant");
        medians[k] - base
    };
    let engine = of("worker_range");
    let batched = of("worker_range_batched100");
    let verdict = |o: f64| if o <= 100.0 { "MET" } else { "MISSED" };
    println!(
        "engine overhead per item: {engine:.2} ns (target <= 100 ns: {}); batched(100): {batched:.2} ns ({})",
        verdict(engine),
        verdict(batched)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list" || a == "--test");
    let rt = runtime();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    benches(&mut c, &rt);
    c.final_summary();
    if !listing && std::env::var("ITERJOB_BENCH_SUMMARY").as_deref() != Ok("0") {
        side_by_side(&rt);
    }
}
