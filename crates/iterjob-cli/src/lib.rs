//! # iterjob-cli
//!
//! The `iterjob` command line, as a library: your own binary registers its job kinds
//! and hands control to [`App::run`], getting every command (`worker`, `enqueue`,
//! `jobs`, `show`, `pause`, `resume`, `cancel`, `retry`, `delete`, `prune`, `queues`,
//! `queue`, `schedules`, `migrate`, `demo`, `dashboard`) for its own kinds. Admin commands need only the store, not the job
//! code.
//!
//! ```no_run
//! use iterjob::enumerator::{self, Enumerator};
//! use iterjob::{Job, JobContext, JobError};
//!
//! struct Reindex;
//!
//! impl Job for Reindex {
//!     const KIND: &'static str = "reindex";
//!     type Params = i64;
//!     type Cursor = i64;
//!     type Item = i64;
//!     fn enumerate(&self, n: &i64, c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
//!         Ok(enumerator::range(0..*n, c))
//!     }
//!     async fn process(&self, _: &JobContext<i64>, _id: i64) -> Result<(), JobError> {
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // `my-binary worker`, `my-binary enqueue reindex --params 1000`, `my-binary jobs`, ...
//!     iterjob_cli::App::new("my-binary").register(Reindex).run()
//! }
//! ```
//!
//! The database comes from `--database-url` or `ITERJOB_DATABASE_URL`; the default is
//! the SQLite file `iterjob.db` in the current directory.

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "iterjob-cli needs at least one store: enable its `sqlite`, `postgres` or `mysql` feature"
);

mod commands;
#[cfg(feature = "dashboard")]
mod dashboard;
mod demo;
mod output;
mod store;

use std::process::ExitCode;

use iterjob::{Job, Registry};

pub use commands::Cli;
#[cfg(feature = "dashboard")]
pub use dashboard::{DashboardArgs, DashboardOptions};
pub use demo::{Product, SyncParams, SyncProducts};
pub use store::{DEFAULT_DATABASE_URL, OpenStore, open_store};

/// A command-line application over a set of job kinds.
#[derive(Debug)]
pub struct App {
    name: String,
    registry: Registry,
}

impl App {
    /// An application named `name` (shown in help), with the demo kind registered.
    pub fn new(name: impl Into<String>) -> Self {
        App {
            name: name.into(),
            registry: Registry::new().with(SyncProducts::default()),
        }
    }

    /// Registers a job kind.
    pub fn register<J: Job>(mut self, job: J) -> Self {
        self.registry.register(job);
        self
    }

    /// Adds a recurring schedule (see [`iterjob::schedule`]): the app's workers
    /// enqueue its jobs, and `schedules` lists it.
    pub fn schedule(mut self, schedule: iterjob::schedule::Schedule) -> Self {
        self.registry.add_schedule(schedule);
        self
    }

    /// Adds a health check for the whole app (see [`iterjob::HealthCheck`]): while
    /// it answers [`iterjob::Health::Throttle`], every kind that does not opt out
    /// backs off, on every worker the app starts.
    pub fn health_check(mut self, check: impl iterjob::HealthCheck) -> Self {
        self.registry.health_check(check);
        self
    }

    /// The kinds registered so far.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses the process's arguments, runs the command on a new tokio runtime, and
    /// returns the exit code: 0 on success, 1 with one readable `error:` line on
    /// failure, 2 for usage errors.
    pub fn run(self) -> ExitCode {
        let cli = Cli::parse_from_name(&self.name);
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: could not start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(self.run_cli(cli))
    }

    /// Runs an already parsed command line on the current tokio runtime.
    pub async fn run_cli(self, cli: Cli) -> ExitCode {
        init_tracing(cli.verbose);
        match commands::execute(cli, self.registry).await {
            Ok(()) => ExitCode::SUCCESS,
            // the reader of the output went away (`| head`): nothing left to say
            Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", one_line(&error));
                ExitCode::FAILURE
            }
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn one_line(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // sqlx reports every statement slower than 1 s at WARN; on a busy SQLite file
        // that is lock waits of concurrent writers, not news (shown from -v on)
        0 => "warn,sqlx::query=error",
        1 => "info,sqlx=warn",
        2 => "debug,sqlx=warn",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("ITERJOB_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

impl Cli {
    fn parse_from_name(name: &str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command()
            .name(name.to_string())
            .bin_name(name.to_string());
        let matches = command.get_matches();
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }
}
