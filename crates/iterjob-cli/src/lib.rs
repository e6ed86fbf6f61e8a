//! # iterjob-cli
//!
//! The `iterjob` command line, as a library: your own binary registers its job kinds
//! and hands control to [`App::run`], getting every command (`worker`, `enqueue`,
//! `jobs`, `show`, `pause`, `resume`, `cancel`, `retry`, `delete`, `prune`, `queues`,
//! `queue`, `throttle`, `schedules`, `migrate`, `kinds`, `dashboard`) for its own
//! kinds, under its own name, about text and version. Admin commands need only the
//! store, not the job code. What jobs share (a pool, a client, configuration) is
//! built once by [`App::setup`], inside the runtime.
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
//!     iterjob_cli::App::new("my-binary")
//!         .about("Reindexing jobs")
//!         .version(env!("CARGO_PKG_VERSION"))
//!         .register(Reindex)
//!         .run()
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
mod health;
mod output;
mod store;

use std::process::ExitCode;

use iterjob::{Job, Registry};

pub use commands::Cli;
#[cfg(feature = "dashboard")]
pub use dashboard::{DashboardArgs, DashboardOptions};
pub use demo::{Product, SyncParams, SyncProducts};
pub use store::{DEFAULT_DATABASE_URL, OpenStore, open_existing_store, open_store};

/// What [`App::setup`] runs: builds the app's shared resources and returns the
/// kinds (and schedules, health checks) that use them.
pub(crate) type SetupFn =
    Box<dyn FnOnce(Setup) -> futures::future::BoxFuture<'static, anyhow::Result<Registry>> + Send>;

/// A command-line application over a set of job kinds: your binary's name, help
/// text and kinds, with every iterjob command.
pub struct App {
    name: String,
    about: Option<String>,
    version: Option<String>,
    registry: Registry,
    setup: Option<SetupFn>,
    demo: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("registry", &self.registry)
            .field("setup", &self.setup.is_some())
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An application named `name`: the name `--help`, usage lines and hints show
    /// (give your binary's name). It has no kinds until you register them.
    pub fn new(name: impl Into<String>) -> Self {
        App {
            name: name.into(),
            about: None,
            version: None,
            registry: Registry::new(),
            setup: None,
            demo: false,
        }
    }

    /// The one-line description `--help` opens with.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.about = Some(about.into());
        self
    }

    /// The version `--version` prints, usually `env!("CARGO_PKG_VERSION")`.
    /// Without one the binary has no `--version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Registers a job kind that needs nothing built at run time. A kind that
    /// shares a pool, a client or configuration is registered by [`App::setup`].
    pub fn register<J: Job>(mut self, job: J) -> Self {
        self.registry.register(job);
        self
    }

    /// The app's setup step: `setup` runs once, inside the app's tokio runtime and
    /// after the job store is open, before any command that needs the kinds
    /// (`worker`, `enqueue`, `kinds`, `schedules`, `throttle`, `dashboard`). It
    /// builds what jobs share (a database pool, an HTTP client, configuration) and
    /// returns the kinds holding it, as a [`Registry`]; the job value is the shared
    /// state, handed to every run as `&self`. Commands that only look at stored
    /// jobs (`jobs`, `show`, `pause` …) never run it.
    ///
    /// ```no_run
    /// use iterjob::Registry;
    /// use iterjob_cli::{App, Setup};
    /// # use iterjob::enumerator::{self, Enumerator};
    /// # use iterjob::{Job, JobContext, JobError};
    /// # struct Backfill { pool: sqlx::SqlitePool }
    /// # impl Job for Backfill {
    /// #     const KIND: &'static str = "backfill";
    /// #     type Params = ();
    /// #     type Cursor = i64;
    /// #     type Item = i64;
    /// #     fn enumerate(&self, _: &(), c: Option<i64>) -> Result<impl Enumerator<i64, i64>, JobError> {
    /// #         Ok(enumerator::range(0..10, c))
    /// #     }
    /// #     async fn process(&self, _: &JobContext<()>, _: i64) -> Result<(), JobError> { Ok(()) }
    /// # }
    ///
    /// fn main() -> std::process::ExitCode {
    ///     App::new("backfill")
    ///         .setup(|setup: Setup| async move {
    ///             // built once, inside the runtime: one pool for every run
    ///             let pool = sqlx::SqlitePool::connect("sqlite://app.db").await?;
    ///             Ok(Registry::new().with(Backfill { pool }))
    ///         })
    ///         .run()
    /// }
    /// ```
    ///
    /// [`Setup`] also hands over the job store itself (for
    /// `Transactional::new`, whose checkpoints commit in the job's own
    /// transactions) and the database URL. An error from `setup` ends the command
    /// with exit code 1 and the error's message.
    pub fn setup<F, Fut>(mut self, setup: F) -> Self
    where
        F: FnOnce(Setup) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<Registry>> + Send + 'static,
    {
        self.setup = Some(Box::new(move |s| Box::pin(setup(s))));
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

    /// Adds the `demo` command and its job kind (`sync_products`), as the `iterjob`
    /// binary has them. Other binaries leave it out.
    pub fn with_demo(mut self) -> Self {
        self.registry.register(SyncProducts::default());
        self.demo = true;
        self
    }

    /// The kinds registered so far (not those [`App::setup`] will add).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses the process's arguments, runs the command on a new tokio runtime, and
    /// returns the exit code: 0 on success, 1 with one readable `error:` line on
    /// failure, 2 for usage errors.
    pub fn run(self) -> ExitCode {
        let cli = {
            use clap::FromArgMatches;
            let matches = self.command().get_matches();
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
        };
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

    /// Parses `args` (the first is the binary's name) as [`App::run`] does, for a
    /// test or a binary that owns its runtime; usage errors come back as clap's
    /// error (`error.exit()` prints it and exits 2).
    pub fn try_parse_from<I, T>(&self, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = self.command().try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }

    /// Runs an already parsed command line on the current tokio runtime.
    pub async fn run_cli(self, cli: Cli) -> ExitCode {
        output::init_tracing(cli.verbose, cli.log_format);
        let name = self.name.clone();
        let context = commands::AppContext {
            name: self.name,
            registry: self.registry,
            setup: self.setup,
            demo: self.demo,
        };
        match commands::execute(cli, context).await {
            Ok(()) => ExitCode::SUCCESS,
            // the reader of the output went away (`| head`): nothing left to say
            Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
            Err(error) => {
                let line = with_binary(&one_line(&error), &name);
                output::status_eprintln(&format!("error: {line}"));
                ExitCode::FAILURE
            }
        }
    }

    /// The clap command for this app: its name, about text and version.
    fn command(&self) -> clap::Command {
        use clap::CommandFactory;
        let about = self.about.clone().unwrap_or_else(|| {
            format!(
                "{}: run and manage its interruptible, resumable jobs.",
                self.name
            )
        });
        let mut command = Cli::command()
            .name(self.name.clone())
            .bin_name(self.name.clone())
            .about(about);
        command = match &self.version {
            Some(version) => command.version(version.clone()),
            None => command
                .version(clap::builder::Resettable::<clap::builder::Str>::Reset)
                .disable_version_flag(true),
        };
        if !self.demo {
            command = command.mut_subcommand("demo", |demo| demo.hide(true));
        }
        command
    }
}

/// What [`App::setup`] gets: the open job store and the database URL it came from.
#[derive(Clone, Debug)]
pub struct Setup {
    name: String,
    database_url: String,
    open: OpenStore,
}

impl Setup {
    /// The binary's name, as given to [`App::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job store's URL (`--database-url` or `ITERJOB_DATABASE_URL`).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The job store, open and migrated.
    pub fn store(&self) -> std::sync::Arc<dyn iterjob::Store> {
        std::sync::Arc::clone(&self.open.store)
    }

    /// The job store as the SQLite store, for `iterjob_sqlite::Transactional::new`
    /// and for its pool ([`iterjob_sqlite::SqliteStore::pool`]) when your tables live
    /// in the same file. An error names the URL when the store is not SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self) -> anyhow::Result<iterjob_sqlite::SqliteStore> {
        match &self.open.backend {
            store::Backend::Sqlite(store) => Ok(store.clone()),
            #[allow(unreachable_patterns)]
            _ => Err(self.not_the_store("SQLite")),
        }
    }

    /// The job store as the PostgreSQL store; see [`Setup::sqlite`].
    #[cfg(feature = "postgres")]
    pub fn postgres(&self) -> anyhow::Result<iterjob_postgres::PgStore> {
        match &self.open.backend {
            store::Backend::Postgres(store) => Ok(store.clone()),
            #[allow(unreachable_patterns)]
            _ => Err(self.not_the_store("PostgreSQL")),
        }
    }

    /// The job store as the MySQL/MariaDB store; see [`Setup::sqlite`].
    #[cfg(feature = "mysql")]
    pub fn mysql(&self) -> anyhow::Result<iterjob_mysql::MySqlStore> {
        match &self.open.backend {
            store::Backend::MySql(store) => Ok(store.clone()),
            #[allow(unreachable_patterns)]
            _ => Err(self.not_the_store("MySQL")),
        }
    }

    #[allow(dead_code)] // not with a single store feature
    fn not_the_store(&self, wanted: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{} needs its job store on {wanted}, but --database-url is `{}`; point \
             --database-url (or ITERJOB_DATABASE_URL) at a {wanted} database",
            self.name,
            self.database_url
        )
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Hints name the commands to run (`` `retry 7` ``, `` `migrate` ``): prefixed with
/// the binary's name (`` `myapp retry 7` ``), so they can be pasted as they are.
fn with_binary(text: &str, name: &str) -> String {
    use clap::CommandFactory;
    let mut out = text.to_string();
    for command in Cli::command().get_subcommands() {
        let command = command.get_name();
        for end in [" ", "`"] {
            out = out.replace(
                &format!("`{command}{end}"),
                &format!("`{name} {command}{end}"),
            );
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::with_binary;

    #[test]
    fn hints_name_the_binary() {
        assert_eq!(
            with_binary(
                "job 7 failed; retry job 7 (the `retry` command) or `jobs --state failed`",
                "myapp"
            ),
            "job 7 failed; retry job 7 (the `myapp retry` command) or `myapp jobs --state failed`"
        );
        assert_eq!(
            with_binary("run `migrate` first; `--queue` is not a command", "billing"),
            "run `billing migrate` first; `--queue` is not a command"
        );
    }
}
