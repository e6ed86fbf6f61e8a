//! `iterjob demo`: the seed's example. `Product.all.find_each { |p| p.sync_and_refresh }`,
//! as an interruptible, resumable job over a real table, in whichever database the
//! store is (SQLite by default, PostgreSQL, MySQL).

mod job;
mod products;

use crate::output::outln;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use iterjob::partition::KeyRange;
use iterjob::store::{JobFilter, JobId, JobRecord, JobState, NewJob, Store};
use iterjob::{Job, Registry, RunningJob, Worker, WorkerConfig};

pub(crate) use job::{Backend, DemoStore, with_store};
pub use job::{SyncParams, SyncProducts};
pub use products::Product;

use crate::commands::wait_for_signal;
use crate::store::open_store;

/// The demo's unique key: at most one unfinished demo job per database.
const DEMO_KEY: &str = "iterjob-demo";

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Products to create (only when a new demo starts; a resumed one keeps its own).
    #[arg(long, default_value_t = 60_000, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub products: u64,
    /// Checkpoint and stop after this long (e.g. 5s), as a deploy would.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_interrupt)]
    pub interrupt_after: Option<Duration>,
    /// Simulated latency of the sync API, per batch of 100 products.
    #[arg(long, default_value = "20ms", value_parser = parse_interrupt)]
    pub api_latency: Duration,
    /// Walk the products as this many partitions at once (one worker slot each),
    /// split at quantiles of the product ids; idle slots split the partitions that
    /// still have the most left. Only when a new demo starts.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub partitions: Option<u32>,
}

fn parse_interrupt(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "`{s}` is negative; give a positive duration such as 5s"
        ));
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 500ms, 5s, 2m"))?;
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!(
            "`{s}` is longer than a day; the demo is not that long"
        ));
    }
    Ok(d)
}

/// `1 run`, `2 runs`.
fn plural(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Creates the demo's table in the store's database unless it exists.
async fn ensure_table<S: DemoStore>(store: &S) -> Result<()> {
    products::ensure_table::<S::Dialect>(store.pool()).await
}

/// Fills the demo's table with `n` fresh products.
async fn fill<S: DemoStore>(store: &S, n: u64) -> Result<()> {
    products::create::<S::Dialect>(store.pool(), n).await
}

/// (products synced, synced more than once).
async fn sync_counts<S: DemoStore>(store: &S) -> Result<(i64, i64)> {
    products::sync_counts::<S::Dialect>(store.pool()).await
}

/// The database's URL as workers started elsewhere find it: an absolute path for a
/// `sqlite://` URL, the URL as given for a server.
fn absolute_url(url: &str) -> String {
    if url.contains("://") && !url.starts_with("sqlite:") {
        return url.to_string();
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    match std::path::absolute(path) {
        Ok(abs) => format!("sqlite://{}", abs.display()),
        Err(_) => url.to_string(),
    }
}

fn cursor_text(job: &JobRecord) -> String {
    job.cursor
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(start)".into())
}

pub(crate) async fn run(url: &str, args: DemoArgs) -> Result<()> {
    let open = open_store(url).await?;
    let store = open.store;
    let backend = open.backend;
    with_store!(&backend, s => ensure_table(s).await?);
    let database_url = absolute_url(url);

    let existing = store
        .job_list(&JobFilter {
            kind: Some(SyncProducts::KIND.to_string()),
            limit: Some(20),
            ..JobFilter::default()
        })
        .await?
        .into_iter()
        .find(|j| !j.state.is_finished() && j.parent_id.is_none());

    let id = match existing {
        Some(job) => {
            let from = if job.is_parent() {
                "its partitions' checkpoints".to_string()
            } else {
                format!("cursor {}", cursor_text(&job))
            };
            outln!(
                "resuming demo job {} ({}) from {from}: {} of {} products already synced",
                job.id,
                job.state,
                job.items_done,
                job.items_total
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into())
            )?;
            if args.products != 60_000 {
                outln!("(--products applies to a new demo only; this one keeps its products)")?;
            }
            if args.partitions.is_some() && args.partitions != job.partitions {
                outln!("(--partitions applies to a new demo only; this one keeps its own)")?;
            }
            match job.state {
                JobState::Paused => {
                    store.job_resume(job.id).await?;
                }
                JobState::Running if job.worker_id.is_some() => {
                    outln!(
                        "job {} is leased by worker {} (crashed or still running?); waiting for its lease to expire…",
                        job.id,
                        job.worker_id.as_deref().unwrap_or("?")
                    )?;
                }
                _ => {}
            }
            job.id
        }
        None => {
            outln!("creating {} products in {url}…", args.products)?;
            with_store!(&backend, s => fill(s, args.products).await?);
            let params = SyncParams {
                database_url: database_url.clone(),
                batch_size: 100,
                api_latency_ms: args.api_latency.as_millis() as u64,
                exactly_once: true,
                abort_at_product: None,
                range: KeyRange::all(),
            };
            let mut new = NewJob::of(&SyncProducts::default(), &params)?.unique_key(DEMO_KEY);
            if let Some(n) = args.partitions {
                new = new.partitions(n);
            }
            let id = store.job_insert(&new).await?;
            match args.partitions {
                Some(n) => outln!(
                    "enqueued demo job {id}: sync and refresh every product, as {n} partitions walked at once"
                )?,
                None => outln!("enqueued demo job {id}: sync and refresh every product")?,
            }
            id
        }
    };

    let record = store
        .job_get(id)
        .await?
        .context("the demo job vanished from the store")?;
    if let Some(pause) = store
        .queue_pauses()
        .await?
        .into_iter()
        .find(|p| p.queue == record.queue)
    {
        anyhow::bail!(
            "the demo job's queue `{}` is paused (since {}), so the job cannot start; run \
             `iterjob queue resume {}`, then `iterjob demo` again",
            pause.queue,
            crate::output::relative(pause.since),
            pause.queue
        );
    }
    let partitions = record.partitions;
    let registry = Registry::new().with(SyncProducts::with_backend(&database_url, backend.clone()));
    let mut config = WorkerConfig::default();
    config.concurrency = partitions.map_or(1, |n| n as usize);
    config.rescue_interval = Duration::from_secs(1);
    config.poll_interval = Duration::from_millis(100);
    let worker = Arc::new(Worker::new(Arc::clone(&store), registry, config)?);
    let shutdown = worker.shutdown_token();
    let running = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };

    let started = Instant::now();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} products {msg}",
        )
        .expect("valid template"),
    );
    let interrupt_at = args
        .interrupt_after
        .map(|d| tokio::time::Instant::now() + d);
    let signal = wait_for_signal();
    tokio::pin!(signal);
    if partitions.is_some() {
        bar.finish_and_clear();
        let interrupted = watch_partitions(&*store, &worker, id, interrupt_at, signal).await?;
        return finish(
            &*store,
            &backend,
            worker,
            shutdown,
            running,
            id,
            interrupted,
            started,
        )
        .await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut bar_started = false;
    let mut run_start: Option<(u64, Instant)> = None;
    let interrupted = loop {
        tokio::select! {
            _ = &mut signal => break true,
            _ = async { tokio::time::sleep_until(interrupt_at.expect("set")).await }, if interrupt_at.is_some() => break true,
            _ = tick.tick() => {}
        }
        if let Some(live) = worker.running().into_iter().find(|j| j.id == id) {
            // rate and ETA over this run only (a resumed job starts part-way)
            let (first_items, first_at) =
                *run_start.get_or_insert((live.items_done, Instant::now()));
            if !bar_started {
                bar.reset();
                bar_started = true;
            }
            if let Some(total) = live.items_total {
                bar.set_length(total);
            }
            bar.set_position(live.items_done);
            let secs = first_at.elapsed().as_secs_f64();
            let rate = if secs > 0.5 {
                (live.items_done - first_items) as f64 / secs
            } else {
                0.0
            };
            let eta = match live.items_total {
                Some(total) if rate > 0.0 => {
                    let left = Duration::from_secs(
                        (total.saturating_sub(live.items_done) as f64 / rate).round() as u64,
                    );
                    format!(", ETA {}", humantime::format_duration(left))
                }
                _ => String::new(),
            };
            bar.set_message(format!("({rate:.0}/s{eta})"));
            continue;
        }
        let job = store
            .job_get(id)
            .await?
            .context("the demo job vanished from the store")?;
        if job.state.is_finished() {
            break false;
        }
        bar.set_message(format!("({})", job.state));
    };
    bar.finish_and_clear();
    finish(
        &*store,
        &backend,
        worker,
        shutdown,
        running,
        id,
        interrupted,
        started,
    )
    .await
}

/// Stops the worker and prints how the demo ended.
#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &dyn Store,
    backend: &Backend,
    worker: Arc<Worker>,
    shutdown: iterjob::CancellationToken,
    running: tokio::task::JoinHandle<iterjob::Result<iterjob::WorkerReport>>,
    id: JobId,
    interrupted: bool,
    started: Instant,
) -> Result<()> {
    shutdown.cancel();
    let report = running.await.context("the demo worker panicked")??;
    drop(worker);
    let job = store
        .job_get(id)
        .await?
        .context("the demo job vanished from the store")?;

    if interrupted && !job.state.is_finished() && job.is_parent() {
        outln!(
            "interrupted: the partitions of job {} checkpointed after {} of {} products ({} items this run)",
            job.id,
            job.items_done,
            job.items_total
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into()),
            report.items
        )?;
        outln!("run `iterjob demo` again to resume from there")?;
        return Ok(());
    }
    if interrupted && !job.state.is_finished() {
        outln!(
            "interrupted: job {} checkpointed at cursor {} after {} of {} products ({} items this run)",
            job.id,
            cursor_text(&job),
            job.items_done,
            job.items_total
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into()),
            report.items
        )?;
        outln!("run `iterjob demo` again to resume from there")?;
        return Ok(());
    }

    let (synced, repeated) = with_store!(backend, s => sync_counts(s).await?);
    let partitions = store.job_partitions(job.id).await?;
    match job.state {
        JobState::Completed if !partitions.is_empty() => {
            let asked = job.partitions.unwrap_or(0) as usize;
            let sum = |f: fn(&JobRecord) -> u32| partitions.iter().map(f).sum::<u32>();
            outln!(
                "demo job {} completed: {} products synced ({} more than once) by {} partitions ({} from dynamic splits), {:.1}s of work in all; {}, {}, {}; this session {:.1}s",
                job.id,
                synced,
                repeated,
                partitions.len(),
                partitions.len().saturating_sub(asked),
                job.running_ms as f64 / 1000.0,
                plural(sum(|p| p.interruptions), "interruption"),
                plural(sum(|p| p.runs), "partition run"),
                plural(sum(|p| p.attempts), "failed attempt"),
                started.elapsed().as_secs_f64()
            )?;
            Ok(())
        }
        JobState::Completed => {
            let secs = job.running_ms as f64 / 1000.0;
            outln!(
                "demo job {} completed: {} products synced ({} more than once) in {:.1}s of running time ({:.0}/s); {}, {}, {}; this session {:.1}s",
                job.id,
                synced,
                repeated,
                secs,
                job.items_done as f64 / secs.max(0.001),
                plural(job.interruptions, "interruption"),
                plural(job.runs, "run"),
                plural(job.attempts, "failed attempt"),
                started.elapsed().as_secs_f64()
            )?;
            Ok(())
        }
        state => bail!(
            "demo job {} ended {state}: {}",
            job.id,
            job.last_error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// A partition's bar label: the ids it walks (`ids 15001–30000`), from its
/// parameters' key range; its job id when they do not say.
fn range_label(part: &JobRecord) -> String {
    let Ok(params) = serde_json::from_value::<SyncParams>(part.params.clone()) else {
        return format!("job {}", part.id);
    };
    let bound = |cursor: &Option<iterjob_sql::KeysetCursor>| {
        cursor.as_ref().map(|c| {
            let text = c.to_string();
            text.trim_start_matches('(')
                .trim_end_matches(')')
                .to_string()
        })
    };
    match (bound(&params.range.after), bound(&params.range.until)) {
        (None, None) => "all ids".to_string(),
        (None, Some(until)) => format!("ids ..={until}"),
        (Some(after), None) => format!("ids >{after}"),
        (Some(after), Some(until)) => format!("ids >{after} ..={until}"),
    }
}

/// Shows one progress bar per partition and one for the whole job until the job
/// finishes (false) or the demo is interrupted (true).
async fn watch_partitions(
    store: &dyn Store,
    worker: &Worker,
    id: JobId,
    interrupt_at: Option<tokio::time::Instant>,
    mut signal: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<bool> {
    let multi = MultiProgress::new();
    let total_bar = multi.add(
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] all        {wide_bar} {pos}/{len} products {msg}",
            )
            .expect("valid template"),
        ),
    );
    let part_style = ProgressStyle::with_template("  {prefix:>22} {bar:40} {pos}/{len} {msg}")
        .expect("valid template");
    let mut bars: BTreeMap<JobId, ProgressBar> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut first: Option<(u64, Instant)> = None;
    let interrupted = loop {
        tokio::select! {
            _ = &mut signal => break true,
            _ = async { tokio::time::sleep_until(interrupt_at.expect("set")).await }, if interrupt_at.is_some() => break true,
            _ = tick.tick() => {}
        }
        let parent = store
            .job_get(id)
            .await?
            .context("the demo job vanished from the store")?;
        if parent.state.is_finished() {
            break false;
        }
        let live: HashMap<JobId, RunningJob> =
            worker.running().into_iter().map(|j| (j.id, j)).collect();
        let parts = store.job_partitions(id).await?;
        let (mut done, mut total, mut known) = (0u64, 0u64, true);
        for part in &parts {
            let running = live.get(&part.id);
            let part_done = running.map_or(part.items_done, |r| r.items_done);
            let part_total = running.and_then(|r| r.items_total).or(part.items_total);
            done += part_done;
            match part_total {
                Some(t) => total += t,
                None => known = false,
            }
            let bar = bars.entry(part.id).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(0).with_style(part_style.clone()));
                bar.set_prefix(range_label(part));
                bar
            });
            if let Some(t) = part_total {
                bar.set_length(t);
            }
            bar.set_position(part_done);
            let state = if running.is_some() {
                "running".to_string()
            } else {
                part.state.to_string()
            };
            bar.set_message(state);
        }
        if known && total > 0 {
            total_bar.set_length(total);
        }
        total_bar.set_position(done);
        let (first_done, first_at) = *first.get_or_insert((done, Instant::now()));
        let secs = first_at.elapsed().as_secs_f64();
        let rate = if secs > 0.5 {
            done.saturating_sub(first_done) as f64 / secs
        } else {
            0.0
        };
        let eta = if known && rate > 0.0 {
            let left =
                Duration::from_secs((total.saturating_sub(done) as f64 / rate).round() as u64);
            format!(", ETA {}", humantime::format_duration(left))
        } else {
            String::new()
        };
        total_bar.set_message(format!("({rate:.0}/s{eta}; {} partitions)", parts.len()));
    };
    for bar in bars.values() {
        bar.finish_and_clear();
    }
    total_bar.finish_and_clear();
    Ok(interrupted)
}

#[cfg(test)]
mod tests {
    use iterjob::Store;
    use serde_json::json;

    use super::range_label;

    #[tokio::test]
    async fn partition_bars_are_labelled_by_their_id_range() {
        let store = iterjob::MemoryStore::new();
        let mut labels = Vec::new();
        for range in [
            json!({"after": null, "until": [1500]}),
            json!({"after": [1500], "until": [3000]}),
            json!({"after": [3000], "until": null}),
        ] {
            let params = json!({"database_url": "sqlite://x.db", "range": range});
            let id = store
                .job_insert(&iterjob::NewJob::new("demo_sync_products", params))
                .await
                .unwrap();
            labels.push(range_label(&store.job_get(id).await.unwrap().unwrap()));
        }
        assert_eq!(labels, ["ids ..=1500", "ids >1500 ..=3000", "ids >3000"]);
        // parameters it cannot read: the job's id
        let id = store
            .job_insert(&iterjob::NewJob::new("demo_sync_products", json!(7)))
            .await
            .unwrap();
        assert_eq!(
            range_label(&store.job_get(id).await.unwrap().unwrap()),
            format!("job {id}")
        );
    }
}
