//! The commands and their arguments.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use iterjob::store::{JobFilter, JobId, JobRecord, JobState, NewJob, QueuePauseMode};
use iterjob::{Registry, Worker, WorkerConfig};

#[cfg(feature = "dashboard")]
use crate::dashboard::{self, DashboardArgs, DashboardOptions};
use crate::demo::{self, DemoArgs};
use crate::output::{
    job_detail, job_json, jobs_table, out, outln, printable, queues_table, relative,
};
use crate::store::{DEFAULT_DATABASE_URL, open_store};

/// Interruptible, resumable iteration jobs.
#[derive(Debug, Parser)]
#[command(name = "iterjob", version, about, long_about = None)]
pub struct Cli {
    /// The store: sqlite://PATH, postgres://USER@HOST/DB[?schema=NAME] or mysql://USER@HOST/DB (default: iterjob.db in the current directory).
    #[arg(long, global = true, env = "ITERJOB_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// More log output (-v info, -vv debug); or set ITERJOB_LOG to a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as text or as JSON objects (one per line, with the run's job id,
    /// kind, attempt and partition), for a log shipper.
    #[arg(long, global = true, env = "ITERJOB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create products, walk them with an interruptible job, and show its progress.
    /// Ctrl-C (or --interrupt-after) checkpoints and stops; run again to resume.
    Demo(DemoArgs),
    /// Run a worker until SIGTERM or Ctrl-C.
    Worker(Box<WorkerArgs>),
    /// Enqueue a job of a registered kind.
    Enqueue(EnqueueArgs),
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Show one job.
    Show(ShowArgs),
    /// Pause a job (a running job pauses at its next item boundary).
    Pause(IdArg),
    /// Resume a paused job.
    Resume(IdArg),
    /// Cancel a job (a running job stops at its next item boundary).
    Cancel(IdArg),
    /// Retry a failed or cancelled job from its last checkpoint.
    Retry(IdArg),
    /// Delete a finished or paused job and its history (a partitioned job with its
    /// partitions); cancel or pause a job that may still run first.
    Delete(IdArg),
    /// Delete finished jobs (with their partitions and history) that finished more
    /// than --older-than ago, in small batches.
    Prune(PruneArgs),
    /// List the queues: paused or not, jobs per state, the backlog (waiting jobs,
    /// the oldest wait) and the estimated work left.
    Queues(QueuesArgs),
    /// Pause or resume a whole queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Throttle jobs by hand: `throttle on` sends the jobs it covers back to their
    /// queue at their next throttle check (no attempt used) and stops workers
    /// claiming them, until `throttle off` or --for is up; `throttle list` shows the
    /// switches on. Kinds that opt out of the default backpressure keep running.
    #[command(subcommand)]
    Throttle(ThrottleCommand),
    /// List the recurring schedules registered in this binary: cron expression,
    /// time zone, next tick, and the last tick's job.
    Schedules(QueuesArgs),
    /// Create or upgrade the store's schema.
    Migrate,
    /// List the job kinds this binary can run.
    Kinds,
    /// Serve the web dashboard (127.0.0.1:8080 unless --bind; other addresses need --token).
    #[cfg(feature = "dashboard")]
    Dashboard(DashboardArgs),
}

/// Arguments of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs to run at once.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=10_000), env = "ITERJOB_CONCURRENCY")]
    pub concurrency: u32,
    /// Queues to take jobs from (repeat for several).
    #[arg(
        long = "queue",
        default_value = "default",
        env = "ITERJOB_QUEUES",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,
    /// Lease length; a job whose worker is silent this long is taken over.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "ITERJOB_LEASE")]
    pub lease: Duration,
    /// How often running jobs renew their lease.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "ITERJOB_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Duration,
    /// How often running jobs checkpoint their cursor.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "ITERJOB_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Duration,
    /// Also checkpoint every this many items.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), env = "ITERJOB_CHECKPOINT_EVERY")]
    pub checkpoint_every: Option<u64>,
    /// Time slice: after this long a job yields its worker and requeues.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "ITERJOB_MAX_RUNTIME")]
    pub max_runtime: Duration,
    /// How long running jobs get to checkpoint on shutdown.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "ITERJOB_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Duration,
    /// How often to poll for jobs when idle.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, env = "ITERJOB_POLL_INTERVAL")]
    pub poll_interval: Duration,
    /// Exit when no job is left to claim instead of waiting for more.
    #[arg(long, conflicts_with = "exit_when_idle", env = "ITERJOB_UNTIL_IDLE")]
    pub until_idle: bool,
    /// Exit (code 0) once nothing was claimable and nothing ran for this long, e.g.
    /// `--exit-when-idle 2m`: for short-lived instances (batch runs, spot fleets,
    /// an autoscaler's scale-to-zero) that stop paying once the queue is drained.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", env = "ITERJOB_EXIT_WHEN_IDLE")]
    pub exit_when_idle: Option<Duration>,
    /// Never ask running partitions to split when this worker is idle.
    #[arg(long, env = "ITERJOB_NO_DYNAMIC_SPLITTING")]
    pub no_dynamic_splitting: bool,
    /// Split only partitions with at least this many items left.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..), env = "ITERJOB_SPLIT_MIN_REMAINING")]
    pub split_min_remaining: u64,
    /// Retention: delete completed jobs this long after they finished (`forever`
    /// keeps them). One worker of all those sharing the store deletes at a time.
    #[arg(long, default_value = "7d", value_parser = parse_keep, value_name = "DURATION|forever", env = "ITERJOB_KEEP_COMPLETED")]
    pub keep_completed: Keep,
    /// Retention of cancelled jobs.
    #[arg(long, default_value = "7d", value_parser = parse_keep, value_name = "DURATION|forever", env = "ITERJOB_KEEP_CANCELLED")]
    pub keep_cancelled: Keep,
    /// Retention of failed jobs.
    #[arg(long, default_value = "30d", value_parser = parse_keep, value_name = "DURATION|forever", env = "ITERJOB_KEEP_FAILED")]
    pub keep_failed: Keep,
    /// This worker deletes no finished job (the --keep-* ages are ignored).
    #[arg(long, env = "ITERJOB_NO_RETENTION")]
    pub no_retention: bool,
    /// A replica whose lag throttles every job (repeat for several):
    /// `postgres://…` (a standby, or a primary whose standbys report their lag) or
    /// `mysql://…` (SHOW REPLICA STATUS).
    #[arg(
        long = "replica-url",
        value_name = "URL",
        env = "ITERJOB_REPLICA_URLS",
        value_delimiter = ','
    )]
    pub replica_urls: Vec<String>,
    /// Jobs back off while a replica is this far behind. The default, 2 s, is about
    /// what gh-ost (1.5 s) and freno (1 s) allow online migrations on MySQL, plus the
    /// second a lag is read apart.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION", env = "ITERJOB_MAX_REPLICA_LAG")]
    pub max_replica_lag: Duration,
    /// Jobs back off while the store's writes take this many times their baseline
    /// (and over 50 ms).
    #[arg(
        long,
        default_value_t = 4.0,
        value_name = "FACTOR",
        env = "ITERJOB_STORE_LATENCY_FACTOR"
    )]
    pub store_latency_factor: f64,
    /// Turn the store-latency signal off (operator switches, replicas and health
    /// checks still apply).
    #[arg(long, env = "ITERJOB_NO_STORE_BACKPRESSURE")]
    pub no_store_backpressure: bool,
    /// How long a throttled job waits in its queue before it may be claimed again.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION", env = "ITERJOB_THROTTLE_BACKOFF")]
    pub throttle_backoff: Duration,
    /// Serve liveness (`/healthz`) and readiness (`/readyz`: the store is migrated
    /// and answers; false from SIGTERM on) probes on this address, e.g. 0.0.0.0:9090.
    #[arg(long, value_name = "ADDR", env = "ITERJOB_HEALTH")]
    pub health: Option<std::net::SocketAddr>,
    /// Also serve the web dashboard on this address (its /metrics then include this
    /// worker's runtime metrics). Anything but loopback requires --token.
    #[cfg(feature = "dashboard")]
    #[arg(long, value_name = "ADDR", env = "ITERJOB_DASHBOARD")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// The dashboard's token and CSV uploads.
    #[cfg(feature = "dashboard")]
    #[command(flatten)]
    pub dashboard_options: DashboardOptions,
}

/// How long finished jobs of a state are kept (`None`: for ever).
#[derive(Clone, Copy, Debug)]
pub struct Keep(pub Option<Duration>);

fn parse_keep(s: &str) -> std::result::Result<Keep, String> {
    if s.trim().eq_ignore_ascii_case("forever") {
        return Ok(Keep(None));
    }
    parse_duration(s).map(|d| Keep(Some(d)))
}

/// Arguments of `enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job kind (see `kinds`).
    pub kind: String,
    /// Parameters as JSON, checked against the kind's parameter type. Left out: the
    /// kind's defaults (`{}`), when every field has one.
    #[arg(long)]
    pub params: Option<String>,
    /// Queue (default: the kind's, else `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority; higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Attempts before the job fails for good.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: Option<u32>,
    /// Run no earlier than this long from now (e.g. 10m).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// At most one unfinished job per key; a duplicate returns the existing job.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// Walk the collection as this many partitions in parallel, each a job of its own
    /// (the kind must implement `Job::partition`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=iterjob::store::MAX_PARTITIONS as i64))]
    pub partitions: Option<u32>,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state (queued, running, paused, completed, retrying, failed, cancelled).
    #[arg(long, value_parser = parse_state)]
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs in this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Only jobs with an id below this (next page).
    #[arg(long)]
    pub before: Option<JobId>,
    /// Leave out the partitions of partitioned jobs: each partitioned job shows
    /// once, with its partitions' progress summed (`iterjob show ID` lists them).
    #[arg(long)]
    pub top_level: bool,
    /// Print JSON (one array).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The job id.
    pub id: JobId,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `iterjob prune` deletes.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Jobs that finished longer ago than this, e.g. `7d`, `12h`.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub older_than: Duration,
    /// Only jobs in this state: completed, failed or cancelled (repeatable; default
    /// all three).
    #[arg(long = "state", value_name = "STATE", value_parser = parse_finished_state)]
    pub states: Vec<JobState>,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Jobs deleted per transaction: small batches keep each one short.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

/// A job state, with the closest name suggested for a typo (`runing`: `running`).
fn parse_state(s: &str) -> std::result::Result<JobState, String> {
    s.parse::<JobState>().map_err(|_| {
        let names = JobState::ALL.map(JobState::as_str);
        let closest = names
            .iter()
            .map(|name| (edit_distance(&s.to_ascii_lowercase(), name), *name))
            .min()
            .filter(|(d, _)| *d <= 2)
            .map(|(_, name)| format!("did you mean `{name}`? "))
            .unwrap_or_default();
        format!(
            "`{s}` is not a job state; {closest}the states are {}",
            names.join(", ")
        )
    })
}

/// The Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn parse_finished_state(s: &str) -> std::result::Result<JobState, String> {
    match s.parse::<JobState>() {
        Ok(state) if state.is_finished() => Ok(state),
        _ => Err(format!(
            "`{s}` is not a finished state; prune takes completed, failed or cancelled"
        )),
    }
}

/// Arguments of `queues`.
#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// Print JSON (one array; for scripts and autoscalers).
    #[arg(long)]
    pub json: bool,
}

/// `iterjob queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pause a queue: no job of it starts, on any worker, until it is resumed. Its
    /// running jobs stop at their next item and wait in the queue (no attempt
    /// used), unless --let-run.
    Pause {
        /// The queue.
        name: String,
        /// Let the runs already going finish their run (their time slice, or the
        /// whole collection); only new starts stop.
        #[arg(long)]
        let_run: bool,
    },
    /// Resume a paused queue: its waiting jobs start again at once.
    Resume {
        /// The queue.
        name: String,
    },
}

/// `iterjob throttle …`.
#[derive(Debug, Subcommand)]
pub enum ThrottleCommand {
    /// Switch a throttle on: every job of the queue and kind (all when left out)
    /// goes back to its queue at its next throttle check, and workers stop claiming
    /// them, within about a second, on every worker of the store.
    On {
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Switch off by itself after this long (e.g. `10m`).
        #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
        for_: Option<Duration>,
        /// Why, shown with every job it throttles.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Switch off the throttle on exactly this scope (the one `throttle on` with the
    /// same --queue and --kind switched on).
    Off {
        /// The switch's queue.
        #[arg(long)]
        queue: Option<String>,
        /// The switch's kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// List the switches on.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A job id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The job id.
    pub id: JobId,
}

/// Parses `1500ms`, `2s`, `5m`, `1h 30m`; a bare number means seconds.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "`{s}` is negative; durations must be positive (e.g. 30s)"
        ));
    }
    let d = if let Ok(secs) = s.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 500ms, 30s, 5m"))?
    };
    if d > Duration::from_secs(365 * 24 * 3600) {
        return Err(format!(
            "`{s}` is longer than a year; that is surely a mistake"
        ));
    }
    Ok(d)
}

/// What a command runs with besides its arguments: the app's name, its kinds, its
/// setup step and whether it has the demo.
pub(crate) struct AppContext {
    pub(crate) name: String,
    pub(crate) registry: Registry,
    pub(crate) setup: Option<crate::SetupFn>,
    pub(crate) demo: bool,
}

impl AppContext {
    /// The kinds: those registered up front plus those the setup step returns (run
    /// now, once, on the open store).
    async fn kinds(
        &mut self,
        database_url: &str,
        open: &crate::store::OpenStore,
    ) -> Result<Registry> {
        let mut registry = std::mem::take(&mut self.registry);
        if let Some(setup) = self.setup.take() {
            let built = setup(crate::Setup {
                name: self.name.clone(),
                database_url: database_url.to_string(),
                open: open.clone(),
            })
            .await
            .with_context(|| format!("setting up {}", self.name))?;
            registry.merge(built);
        }
        Ok(registry)
    }
}

pub(crate) async fn execute(cli: Cli, mut context: AppContext) -> Result<()> {
    match cli.command {
        Command::Kinds if context.setup.is_none() => {
            for kind in context.registry.kinds() {
                outln!("{kind}")?;
            }
            Ok(())
        }
        Command::Demo(_) if !context.demo => anyhow::bail!(
            "{} has no demo; the `iterjob` binary (cargo install iterjob-cli) runs it",
            context.name
        ),
        Command::Demo(args) => demo::run(&cli.database_url, args).await,
        command => {
            // a worker keeps a SIGTERM that arrives while it starts
            let stop = matches!(command, Command::Worker(_)).then(StopSignal::install);
            // commands that look at or act on stored jobs never create a database
            // nor change its schema
            let creates = matches!(
                command,
                Command::Migrate
                    | Command::Worker(_)
                    | Command::Enqueue(_)
                    | Command::Queue(_)
                    | Command::Kinds
            ) || matches!(command, Command::Throttle(ThrottleCommand::On { .. }));
            #[cfg(feature = "dashboard")]
            let creates = creates || matches!(command, Command::Dashboard(_));
            let open = if creates {
                open_store(&cli.database_url).await?
            } else {
                crate::store::open_existing_store(&cli.database_url).await?
            };
            // only the commands that use the kinds run the app's setup
            let needs_kinds = matches!(
                command,
                Command::Worker(_)
                    | Command::Enqueue(_)
                    | Command::Kinds
                    | Command::Throttle(_)
                    | Command::Schedules(_)
            );
            #[cfg(feature = "dashboard")]
            let needs_kinds = needs_kinds || matches!(command, Command::Dashboard(_));
            let registry = if needs_kinds {
                context.kinds(&cli.database_url, &open).await?
            } else {
                Registry::new()
            };
            let store = open.store;
            match command {
                Command::Migrate => {
                    store.migrate().await?;
                    outln!("migrated {}", cli.database_url)?;
                    Ok(())
                }
                Command::Worker(args) => {
                    let stop = stop.unwrap_or_else(StopSignal::install);
                    run_worker(store, registry, *args, stop).await
                }
                #[cfg(feature = "dashboard")]
                Command::Dashboard(args) => dashboard::run(store, registry, args).await,
                Command::Enqueue(args) => enqueue(&*store, &registry, args).await,
                Command::Jobs(args) => list(&*store, args).await,
                Command::Show(args) => {
                    let job = get(&*store, args.id).await?;
                    let partitions = if job.is_parent() {
                        store.job_partitions(job.id).await?
                    } else {
                        Vec::new()
                    };
                    if args.json {
                        let mut out = job_json(&job);
                        if job.is_parent() {
                            out["partition_jobs"] =
                                partitions.iter().map(job_json).collect::<Vec<_>>().into();
                        }
                        outln!("{}", serde_json::to_string_pretty(&out)?)?;
                    } else {
                        outln!("{}", job_detail(&job))?;
                        if !partitions.is_empty() {
                            outln!("\npartitions ({}):", partitions.len())?;
                            out!("{}", jobs_table(&partitions))?;
                        }
                    }
                    Ok(())
                }
                Command::Pause(IdArg { id }) => {
                    let job = store.job_pause(id).await?;
                    if job.state == JobState::Running {
                        outln!("job {id}: pause requested; it pauses at its next item boundary")?;
                    } else {
                        outln!("job {id}: {}", job.state)?;
                    }
                    Ok(())
                }
                Command::Resume(IdArg { id }) => {
                    let job = store.job_resume(id).await?;
                    outln!("job {id}: {}", job.state)?;
                    Ok(())
                }
                Command::Cancel(IdArg { id }) => {
                    let job = store.job_cancel(id).await?;
                    if job.state == JobState::Running {
                        outln!("job {id}: cancel requested; it stops at its next item boundary")?;
                    } else {
                        outln!("job {id}: {}", job.state)?;
                    }
                    Ok(())
                }
                Command::Retry(IdArg { id }) => {
                    let job = store.job_retry(id).await?;
                    outln!(
                        "job {id}: {} (resumes from cursor {})",
                        job.state,
                        job.cursor
                            .as_ref()
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "(start)".into())
                    )?;
                    Ok(())
                }
                Command::Delete(IdArg { id }) => {
                    let deleted = store.job_delete(id).await?;
                    match deleted.saturating_sub(1) {
                        0 => outln!("job {id} deleted, with its history")?,
                        1 => outln!("job {id} and its partition deleted, with their history")?,
                        n => outln!("job {id} and its {n} partitions deleted, with their history")?,
                    }
                    Ok(())
                }
                Command::Prune(args) => prune(&*store, &args).await,
                Command::Queues(args) => queues(&*store, &args).await,
                Command::Queue(command) => queue(&*store, command).await,
                Command::Throttle(command) => throttle(&*store, &registry, command).await,
                Command::Schedules(args) => schedules(&*store, &registry, args.json).await,
                Command::Kinds => {
                    for kind in registry.kinds() {
                        outln!("{kind}")?;
                    }
                    Ok(())
                }
                Command::Demo(_) => unreachable!("handled above"),
            }
        }
    }
}

async fn get(store: &dyn iterjob::Store, id: JobId) -> Result<JobRecord> {
    store
        .job_get(id)
        .await?
        .ok_or_else(|| iterjob::Error::JobNotFound(id).into())
}

async fn enqueue(store: &dyn iterjob::Store, registry: &Registry, args: EnqueueArgs) -> Result<()> {
    let mut job: NewJob = match &args.params {
        Some(text) => {
            let params: serde_json::Value = serde_json::from_str(text).with_context(|| {
                // the start of it is enough to recognize it; a huge value is not echoed whole
                let shown: String = text.chars().take(80).collect();
                let more = if shown.len() < text.len() {
                    format!("… ({} bytes in all)", text.len())
                } else {
                    String::new()
                };
                format!(
                    "--params is not valid JSON (`{}{more}`); quote it for the shell, e.g. --params '{{\"limit\": 10}}'",
                    crate::output::printable(&shown)
                )
            })?;
            registry.new_job(&args.kind, params)?
        }
        // no parameters given: the kind's defaults (`{}`), or none at all (`null`, a
        // kind whose parameters are `()`); else name what is missing
        None if registry.contains(&args.kind) => {
            match registry.new_job(&args.kind, serde_json::json!({})) {
                Ok(job) => job,
                Err(first) => registry
                    .new_job(&args.kind, serde_json::Value::Null)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "job kind `{}` needs parameters ({}); pass them as JSON with \
                             --params '{{…}}'",
                            args.kind,
                            first
                        )
                    })?,
            }
        }
        None => registry.new_job(&args.kind, serde_json::Value::Null)?,
    };
    if let Some(queue) = args.queue {
        iterjob::store::check_queue_name(&queue).context("--queue")?;
        job.queue = queue;
    }
    job.priority = args.priority;
    if let Some(n) = args.max_attempts {
        job.max_attempts = n;
    }
    if let Some(delay) = args.delay {
        job.run_at = Some(iterjob::store::now_millis() + iterjob::store::duration_millis(delay));
    }
    job.unique_key = args.unique_key;
    if let Some(n) = args.partitions {
        registry.check_partitions(&args.kind, n)?;
    }
    job.partitions = args.partitions;
    let id = store.job_insert(&job).await?;
    if args.json {
        let record = get(store, id).await?;
        outln!("{}", serde_json::to_string_pretty(&job_json(&record))?)?;
    } else {
        outln!("enqueued job {id} ({})", job.kind)?;
    }
    Ok(())
}

async fn list(store: &dyn iterjob::Store, args: JobsArgs) -> Result<()> {
    let filter = JobFilter {
        state: args.state,
        kind: args.kind,
        queue: args.queue,
        before_id: args.before,
        limit: Some(args.limit as usize),
        top_level: args.top_level,
    };
    let jobs = store.job_list(&filter).await?;
    if args.json {
        let out: Vec<_> = jobs.iter().map(job_json).collect();
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else if jobs.is_empty() {
        outln!("no jobs")?;
    } else {
        out!("{}", jobs_table(&jobs))?;
    }
    Ok(())
}

async fn run_worker(
    store: Arc<dyn iterjob::Store>,
    registry: Registry,
    args: WorkerArgs,
    stop: StopSignal,
) -> Result<()> {
    let mut config = WorkerConfig::default();
    config.concurrency = args.concurrency as usize;
    config.queues = args.queues;
    config.lease = args.lease;
    config.heartbeat_interval = args.heartbeat_interval;
    config.checkpoint_interval = args.checkpoint_interval;
    config.checkpoint_every = args.checkpoint_every;
    config.max_runtime = args.max_runtime;
    config.shutdown_timeout = args.shutdown_timeout;
    config.poll_interval = args.poll_interval;
    config.rescue_interval = (args.lease / 4).max(Duration::from_millis(100));
    config.dynamic_splitting = !args.no_dynamic_splitting;
    config.split_min_remaining = args.split_min_remaining;
    config.retention = (!args.no_retention).then(|| {
        let mut retention = iterjob::Retention::default();
        retention.completed = args.keep_completed.0;
        retention.cancelled = args.keep_cancelled.0;
        retention.failed = args.keep_failed.0;
        retention
    });
    config.backpressure.backoff = args.throttle_backoff;
    config.backpressure.store_latency =
        (!args.no_store_backpressure).then(|| iterjob::StoreLatency {
            factor: args.store_latency_factor,
            ..iterjob::StoreLatency::default()
        });
    let mut registry = registry;
    for url in &args.replica_urls {
        let check = replica_check(url, args.max_replica_lag)?;
        // a replica that cannot be measured holds every job back: say so now, not
        // only in the jobs' history
        match tokio::time::timeout(Duration::from_secs(5), check.check()).await {
            Ok(Ok(iterjob::Health::Healthy)) => {}
            Ok(Ok(iterjob::Health::Throttle(why))) => {
                eprintln!(
                    "note: {}: {why}; jobs wait until it catches up",
                    check.name()
                )
            }
            Ok(Err(error)) => eprintln!(
                "warning: {} cannot measure the lag: {}; every job that obeys the default \
                 backpressure is held back until it can",
                check.name(),
                iterjob::error_chain(&*error)
            ),
            Err(_) => eprintln!(
                "warning: {} did not answer within 5 s; every job that obeys the default \
                 backpressure is held back until it does",
                check.name()
            ),
        }
        registry.add_health_check(check);
    }
    #[cfg(feature = "dashboard")]
    let web = match args.dashboard {
        Some(addr) => {
            let mut web = dashboard::build(Arc::clone(&store), &registry, &args.dashboard_options)?;
            web.check_bind(addr)?;
            match iterjob_dashboard::install_prometheus() {
                Ok(handle) => web = web.prometheus(handle),
                Err(error) => tracing::warn!(%error, "runtime metrics are off"),
            }
            Some((web, addr))
        }
        None => None,
    };
    // a worker whose queues are paused looks idle: say why
    match store.queue_pauses().await {
        Ok(pauses) => {
            for pause in pauses.iter().filter(|p| config.queues.contains(&p.queue)) {
                eprintln!(
                    "note: queue {} is paused (since {}); its jobs wait until `queue resume {}`",
                    printable(&pause.queue),
                    relative(pause.since),
                    printable(&pause.queue)
                );
            }
        }
        Err(error) => tracing::warn!(%error, "could not read the paused queues"),
    }
    let probes = crate::health::Health::new();
    let probes_stop = iterjob::CancellationToken::new();
    // stops the probe server however this function returns
    let _probes_guard = probes_stop.clone().drop_guard();
    if let Some(addr) = args.health {
        crate::health::spawn(addr, Arc::clone(&store), Arc::clone(&probes), probes_stop).await?;
    }
    let worker = Arc::new(Worker::new(store, registry, config)?);
    let shutdown = worker.shutdown_token();
    #[cfg(feature = "dashboard")]
    if let Some((web, addr)) = web {
        dashboard::spawn(web, addr, shutdown.clone()).await?;
    }
    let status = tokio::spawn(show_status(Arc::clone(&worker)));
    tokio::spawn(async move {
        stop.wait().await;
        // readiness turns false before anything else stops
        probes.stopping();
        crate::output::status_eprintln("shutting down: running jobs checkpoint and are released…");
        shutdown.cancel();
    });
    eprintln!(
        "worker {} started (kinds: {})",
        worker.config().worker_id,
        worker.kinds().join(", ")
    );
    let report = if args.until_idle {
        worker.run_until_idle().await
    } else if let Some(grace) = args.exit_when_idle {
        worker.run_until_idle_for(grace).await
    } else {
        worker.run().await
    };
    status.abort();
    crate::output::status_line().finish_and_clear();
    let report = report?;
    eprintln!(
        "worker stopped: {} {}, {} {}, {} completed, {} interrupted, {} retrying, {} failed",
        report.runs,
        if report.runs == 1 { "run" } else { "runs" },
        report.items,
        if report.items == 1 { "item" } else { "items" },
        report.completed,
        report.interrupted,
        report.retried,
        report.failed
    );
    // a script or CI step that drains the queue must not read a failure as success
    if (args.until_idle || args.exit_when_idle.is_some())
        && (report.failed > 0 || !report.left_retrying.is_empty())
    {
        anyhow::bail!(
            "{} of the jobs this worker ran failed and {} are waiting to retry; `jobs --state \
             failed` and `jobs --state retrying` list them",
            report.failed,
            report.left_retrying.len()
        );
    }
    Ok(())
}

/// `iterjob queues`.
async fn queues(store: &dyn iterjob::Store, args: &QueuesArgs) -> Result<()> {
    let stats = store.queue_stats().await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&stats)?)?;
    } else if stats.is_empty() {
        outln!("no queues: no job was enqueued yet")?;
    } else {
        out!("{}", queues_table(&stats))?;
    }
    Ok(())
}

/// One registered schedule with its state, for `iterjob schedules`.
struct ScheduleRow<'a> {
    schedule: &'a iterjob::schedule::Schedule,
    last_tick: Option<iterjob::store::Millis>,
    /// The last tick's job: its id, and its state unless it was deleted since.
    last_job: Option<(JobId, Option<JobState>)>,
    next_tick: Option<iterjob::store::Millis>,
}

async fn schedule_rows<'a>(
    store: &dyn iterjob::Store,
    registry: &'a Registry,
    now: iterjob::store::Millis,
) -> Result<Vec<ScheduleRow<'a>>> {
    let states: std::collections::HashMap<String, iterjob::store::ScheduleState> = store
        .schedule_states()
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut rows = Vec::new();
    for schedule in registry.schedules() {
        let state = states.get(schedule.name());
        let last_job = match state.and_then(|s| s.last_job) {
            Some(id) => Some((id, store.job_get(id).await?.map(|j| j.state))),
            None => None,
        };
        rows.push(ScheduleRow {
            schedule,
            last_tick: state.map(|s| s.last_tick),
            last_job,
            next_tick: schedule.next_after(now),
        });
    }
    Ok(rows)
}

fn schedules_json(rows: &[ScheduleRow<'_>]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            let s = r.schedule;
            serde_json::json!({
                "name": s.name(),
                "cron": s.expression(),
                "timezone": s.timezone_name(),
                "kind": s.kind(),
                "params": s.params(),
                "queue": s.queue_name(),
                "overlap": s.overlap_policy(),
                "catch_up": s.catch_up_policy(),
                "next_tick": r.next_tick.map(|t| s.format_time(t)),
                "last_tick": r.last_tick.map(|t| s.format_time(t)),
                "last_job": r.last_job.map(|(id, state)| serde_json::json!({"id": id, "state": state})),
            })
        })
        .collect::<Vec<_>>()
        .into()
}

fn schedules_text(rows: &[ScheduleRow<'_>]) -> String {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return "no schedules registered in this binary (add them with Registry::schedule or \
                App::schedule; see the README's Schedules section)\n"
            .to_string();
    }
    let mut out = String::new();
    for r in rows {
        let s = r.schedule;
        let _ = writeln!(
            out,
            "{}  `{}` {}  kind {}  overlap {:?}  catch-up {:?}",
            printable(s.name()),
            s.expression(),
            s.timezone_name(),
            s.kind(),
            s.overlap_policy(),
            s.catch_up_policy()
        );
        let _ = writeln!(
            out,
            "    next tick {}",
            r.next_tick
                .map_or_else(|| "never".to_string(), |t| s.format_time(t))
        );
        let _ = match (r.last_tick, r.last_job) {
            (None, _) => writeln!(
                out,
                "    not seen by a worker yet (it starts counting when one runs)"
            ),
            (Some(t), Some((id, Some(state)))) => {
                writeln!(
                    out,
                    "    last tick {}: job {id} ({state})",
                    s.format_time(t)
                )
            }
            (Some(t), Some((id, None))) => writeln!(
                out,
                "    last tick {}: job {id} (deleted since)",
                s.format_time(t)
            ),
            (Some(t), None) => writeln!(out, "    last tick {}: no job", s.format_time(t)),
        };
    }
    out
}

/// `iterjob schedules`.
async fn schedules(store: &dyn iterjob::Store, registry: &Registry, json: bool) -> Result<()> {
    let rows = schedule_rows(store, registry, iterjob::store::now_millis()).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&schedules_json(&rows))?)?;
    } else {
        out!("{}", schedules_text(&rows))?;
    }
    Ok(())
}

/// `iterjob queue pause|resume`.
async fn queue(store: &dyn iterjob::Store, command: QueueCommand) -> Result<()> {
    match command {
        QueueCommand::Pause { name, let_run } => {
            let mode = if let_run {
                QueuePauseMode::LetRun
            } else {
                QueuePauseMode::Interrupt
            };
            let pause = store.queue_pause(&name, mode).await?;
            let stats = store.queue_stats().await?;
            let shown = printable(&name);
            let q = stats.iter().find(|q| q.queue == name);
            let running = q.map_or(0, |q| {
                q.counts.get(&JobState::Running).copied().unwrap_or(0)
            });
            let total: u64 = q.map_or(0, |q| q.counts.values().sum());
            outln!(
                "queue {shown} paused (since {}): no job of it starts until `queue resume {shown}`",
                relative(pause.since)
            )?;
            if running > 0 {
                match pause.mode {
                    QueuePauseMode::Interrupt => outln!(
                        "{running} running jobs stop at their next item and wait in the queue"
                    )?,
                    QueuePauseMode::LetRun => {
                        outln!("{running} running jobs finish their current run")?
                    }
                }
            }
            if total == 0 {
                let known: Vec<String> = stats
                    .iter()
                    .filter(|q| q.counts.values().sum::<u64>() > 0)
                    .map(|q| printable(&q.queue))
                    .collect();
                let known = if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                };
                eprintln!(
                    "note: no job is in queue {shown} (queues with jobs: {known}); it is paused \
                     anyway, for jobs enqueued later. A typo? `queue resume {shown}` undoes it."
                );
            }
        }
        QueueCommand::Resume { name } => {
            if store.queue_resume(&name).await? {
                outln!("queue {} resumed", printable(&name))?;
            } else {
                outln!("queue {} was not paused; nothing to do", printable(&name))?;
            }
        }
    }
    Ok(())
}

/// The replica-lag check for `url`, by its scheme.
fn replica_check(url: &str, max_lag: Duration) -> Result<Arc<dyn iterjob::HealthCheck>> {
    let _ = max_lag;
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(iterjob_postgres::ReplicaLag::new(url, max_lag)?));
    }
    #[cfg(feature = "mysql")]
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        return Ok(Arc::new(iterjob_mysql::ReplicaLag::new(&url, max_lag)?));
    }
    let scheme = url.split("://").next().unwrap_or(url);
    Err(iterjob::Error::Config(format!(
        "--replica-url `{scheme}://…`: replicas are PostgreSQL (postgres://) or MySQL/MariaDB \
         (mysql://) servers{}",
        if cfg!(all(feature = "postgres", feature = "mysql")) {
            ""
        } else {
            "; this binary was built without the store feature for it"
        }
    ))
    .into())
}

/// `iterjob throttle on|off|list`.
async fn throttle(
    store: &dyn iterjob::Store,
    registry: &Registry,
    command: ThrottleCommand,
) -> Result<()> {
    match command {
        ThrottleCommand::On {
            queue,
            kind,
            for_,
            reason,
        } => {
            let now = iterjob::store::now_millis();
            let mut switch = iterjob::ThrottleSwitch::new(queue, kind, now);
            switch.until = for_.map(|d| now.saturating_add(iterjob::store::duration_millis(d)));
            switch.reason = reason;
            let on = store.throttle_on(&switch).await?;
            let until = match on.until {
                Some(until) => format!("until {} (then off by itself)", relative(until)),
                None => "until `throttle off`".to_string(),
            };
            outln!(
                "throttle on for {} (since {}), {until}: its running jobs go back to their \
                 queue at their next check; workers claim none of them meanwhile",
                on.scope(),
                relative(on.since)
            )?;
            if let Some(kind) = &on.kind
                && !registry.contains(kind)
            {
                eprintln!(
                    "note: kind {} is not registered in this binary (kinds: {}); switched on \
                     anyway, for workers that run it. A typo? `throttle off{}` undoes it.",
                    printable(kind),
                    registry.kinds().join(", "),
                    scope_flags(&on)
                );
            }
            let exempt = registry.exempt_kinds();
            if !exempt.is_empty() {
                eprintln!(
                    "note: kinds that opted out of the default backpressure keep running: {}",
                    exempt.join(", ")
                );
            }
        }
        ThrottleCommand::Off { queue, kind } => {
            let probe = iterjob::ThrottleSwitch::new(queue.clone(), kind.clone(), 0);
            if store
                .throttle_off(queue.as_deref(), kind.as_deref())
                .await?
            {
                outln!("throttle off for {}: its jobs run again", probe.scope())?;
            } else {
                let on = store
                    .throttle_switches(iterjob::store::now_millis())
                    .await?;
                let listed: Vec<String> = on
                    .iter()
                    .map(|s| format!("`throttle off{}`", scope_flags(s)))
                    .collect();
                outln!(
                    "no throttle was on for {}; nothing to do{}",
                    probe.scope(),
                    if listed.is_empty() {
                        String::new()
                    } else {
                        format!(" (switches on: {})", listed.join(", "))
                    }
                )?;
            }
        }
        ThrottleCommand::List { json } => {
            let on = store
                .throttle_switches(iterjob::store::now_millis())
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&on)?)?;
            } else if on.is_empty() {
                outln!("no throttle switch is on")?;
            } else {
                for s in &on {
                    let until = match s.until {
                        Some(until) => format!("until {}", relative(until)),
                        None => "until switched off".into(),
                    };
                    outln!(
                        "{:<40} since {}, {until}{}",
                        s.scope(),
                        relative(s.since),
                        s.reason
                            .as_deref()
                            .map(|r| format!(" ({})", printable(r)))
                            .unwrap_or_default()
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The `--queue`/`--kind` flags naming a switch's scope.
fn scope_flags(switch: &iterjob::ThrottleSwitch) -> String {
    let mut flags = String::new();
    if let Some(q) = &switch.queue {
        flags.push_str(&format!(" --queue {}", printable(q)));
    }
    if let Some(k) = &switch.kind {
        flags.push_str(&format!(" --kind {}", printable(k)));
    }
    flags
}

/// `iterjob prune`: counts, then deletes batch after batch, with a progress line.
async fn prune(store: &dyn iterjob::Store, args: &PruneArgs) -> Result<()> {
    use std::io::IsTerminal;
    let states = if args.states.is_empty() {
        vec![JobState::Completed, JobState::Failed, JobState::Cancelled]
    } else {
        args.states.clone()
    };
    let cutoff = iterjob::store::now_millis()
        .saturating_sub(iterjob::store::duration_millis(args.older_than));
    let mut due = Vec::new();
    for &state in &states {
        due.push((state, store.job_prunable(state, cutoff).await?));
    }
    let total: u64 = due.iter().map(|(_, n)| n).sum();
    let age = humantime::format_duration(args.older_than);
    if args.dry_run {
        for (state, n) in &due {
            outln!("{n} {state} jobs finished more than {age} ago")?;
        }
        outln!("dry run: {total} jobs would be deleted (with their partitions and history)")?;
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(total);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "pruning {bar:40} {pos}/{len} jobs, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut deleted = 0u64;
    for (state, _) in &due {
        let mut after = 0;
        loop {
            let batch = store
                .job_prune(*state, cutoff, after, args.batch as usize)
                .await?;
            deleted += batch.deleted;
            bar.inc(batch.deleted);
            match batch.last_id {
                Some(last) if batch.deleted >= args.batch => after = last,
                _ => break,
            }
        }
    }
    bar.finish_and_clear();
    outln!(
        "deleted {deleted} jobs that finished more than {age} ago (with their partitions and \
         history) in {:.1}s",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// Shows what the worker is running: a live status line on a terminal, a log line
/// every 10 seconds otherwise.
async fn show_status(worker: Arc<Worker>) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let bar = crate::output::status_line();
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last: std::collections::HashMap<JobId, (u64, std::time::Instant)> = Default::default();
    let mut rates: std::collections::HashMap<JobId, f64> = Default::default();
    let mut ticks = 0u64;
    let mut last_throttles: Vec<(String, iterjob::store::Millis)> = Vec::new();
    let period = Duration::from_millis(500);
    loop {
        tokio::time::sleep(period).await;
        ticks += 1;
        let running = worker.running();
        let mut parts = Vec::new();
        for job in &running {
            let now = std::time::Instant::now();
            let (prev, at) = last.get(&job.id).copied().unwrap_or((job.items_done, now));
            let dt = now.duration_since(at).as_secs_f64();
            if dt >= 1.0 {
                let rate = (job.items_done.saturating_sub(prev)) as f64 / dt;
                let smoothed = rates.get(&job.id).map_or(rate, |r| 0.7 * r + 0.3 * rate);
                rates.insert(job.id, smoothed);
                last.insert(job.id, (job.items_done, now));
            } else {
                last.entry(job.id).or_insert((job.items_done, now));
            }
            let rate = rates.get(&job.id).copied().unwrap_or(0.0);
            let progress = match job.items_total {
                Some(total) if total > 0 => format!(
                    "{}/{} ({:.0}%)",
                    job.items_done,
                    total,
                    job.items_done as f64 * 100.0 / total as f64
                ),
                _ => job.items_done.to_string(),
            };
            let eta = match (job.items_total, rate > 0.0) {
                (Some(total), true) => format!(
                    ", ETA {}",
                    humantime::format_duration(Duration::from_secs(
                        (total.saturating_sub(job.items_done) as f64 / rate) as u64
                    ))
                ),
                _ => String::new(),
            };
            let throttled = crate::output::throttle_note(job.throttle_delay);
            parts.push(format!(
                "job {} {} {progress} {rate:.0}/s{eta}{throttled}",
                job.id, job.kind
            ));
        }
        last.retain(|id, _| running.iter().any(|j| j.id == *id));
        rates.retain(|id, _| running.iter().any(|j| j.id == *id));
        let throttles = worker.throttles();
        let mut line = if parts.is_empty() {
            "idle, waiting for jobs".to_string()
        } else {
            parts.join(" | ")
        };
        if let Some(first) = throttles.first() {
            let more = match throttles.len() {
                1 => String::new(),
                n => format!(" (+{} more signals)", n - 1),
            };
            line.push_str(&format!(
                " | throttled by {} for {}: {}{more}",
                first.name,
                first.scope(),
                first.why
            ));
        }
        // a signal that comes on or clears is worth a line of its own in a log
        let changed = throttles.len() != last_throttles.len()
            || throttles.iter().any(|t| {
                !last_throttles
                    .iter()
                    .any(|(n, s)| *n == t.name && *s == t.since)
            });
        if changed {
            if !tty {
                if throttles.is_empty() {
                    eprintln!("backpressure: every signal cleared; jobs run again");
                } else {
                    for t in &throttles {
                        eprintln!(
                            "backpressure: {} holds back {}: {}",
                            t.name,
                            t.scope(),
                            t.why
                        );
                    }
                }
            }
            last_throttles = throttles
                .iter()
                .map(|t| (t.name.clone(), t.since))
                .collect();
        }
        if tty {
            bar.set_message(line);
            bar.tick();
        } else if ticks.is_multiple_of(20) {
            eprintln!("{line}");
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
/// SIGTERM and SIGINT listeners installed before anything else a long-running
/// command does (opening the store, migrating): a deploy's SIGTERM that arrives
/// while the worker is starting is kept, and the worker stops gracefully (exit 0)
/// as soon as it runs, instead of dying of the signal's default action.
pub(crate) struct StopSignal {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignal {
    /// Installs the listeners now (inside a tokio runtime).
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listeners = signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .ok();
            StopSignal { listeners }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    /// Resolves on SIGTERM or SIGINT, including one received since [`StopSignal::install`].
    pub(crate) async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.listeners {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        wait_for_signal().await
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use iterjob::schedule::{Schedule, ScheduleTick};
    use iterjob::store::{MemoryStore, Store};

    #[tokio::test]
    async fn schedules_list_their_next_and_last_ticks() {
        let registry = Registry::new()
            .with(crate::SyncProducts::default())
            .schedule(
                Schedule::new(
                    "nightly",
                    "0 3 * * *",
                    "demo_sync_products",
                    serde_json::json!({}),
                )
                .unwrap()
                .timezone("Europe/Berlin")
                .unwrap(),
            )
            .schedule(
                Schedule::new(
                    "hourly",
                    "0 * * * *",
                    "demo_sync_products",
                    serde_json::json!({}),
                )
                .unwrap(),
            );
        let store = MemoryStore::new();
        let now = 1_796_000_000_000; // 2026-11-30T00:53:20Z, 01:53:20 in Berlin
        store
            .schedule_tick(&ScheduleTick {
                name: "hourly".into(),
                previous: None,
                tick: now - 1_000,
                job: Some(NewJob::new("demo_sync_products", serde_json::json!({}))),
                skip_if_running: true,
            })
            .await
            .unwrap();
        let rows = schedule_rows(&store, &registry, now).await.unwrap();
        let json = schedules_json(&rows);
        assert_eq!(json[0]["name"], "nightly");
        assert_eq!(json[0]["timezone"], "Europe/Berlin");
        assert_eq!(json[0]["next_tick"], "2026-11-30T03:00:00+01:00");
        assert_eq!(json[0]["last_tick"], serde_json::Value::Null);
        assert_eq!(json[0]["overlap"], "skip");
        assert_eq!(json[1]["next_tick"], "2026-11-30T01:00:00+00:00");
        assert_eq!(json[1]["last_job"]["state"], "queued");
        let text = schedules_text(&rows);
        assert!(
            text.contains("nightly  `0 3 * * *` Europe/Berlin"),
            "{text}"
        );
        assert!(text.contains("not seen by a worker yet"), "{text}");
        assert!(text.contains("job 1 (queued)"), "{text}");
        assert!(schedules_text(&[]).contains("no schedules registered"));
    }
}
