//! A user's own `App`, driven in-process: `enqueue KIND` without `--params` takes
//! the kind's defaults when its parameters have them.

use std::process::ExitCode;

use clap::Parser;
use iterjob::enumerator::{self, Enumerator};
use iterjob::{Job, JobContext, JobError, Store};
use iterjob_cli::{App, Cli};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
struct Limits {
    up_to: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { up_to: 10 }
    }
}

struct Count;

impl Job for Count {
    const KIND: &'static str = "count";
    type Params = Limits;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &Limits,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.up_to, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Limits>, _n: i64) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_without_params_takes_the_kinds_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let cli =
        Cli::try_parse_from(["myapp", "--database-url", &url, "enqueue", "count"]).expect("parse");
    let code = App::new("myapp").register(Count).run_cli(cli).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let store = iterjob_sqlite::SqliteStore::connect(&url)
        .await
        .expect("open");
    let job = store.job_get(1).await.expect("get").expect("enqueued");
    assert_eq!(job.kind, "count");
    let params: Limits = serde_json::from_value(job.params).expect("params");
    assert_eq!(params.up_to, 10, "the defaults");
}

/// A kind that shares what the app's setup built: a counter standing for a pool or
/// a client, and the job store's own pool.
struct Tally {
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pool: sqlx::SqlitePool,
}

impl Job for Tally {
    const KIND: &'static str = "tally";
    type Params = Limits;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &Limits,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..p.up_to, cursor))
    }

    async fn process(&self, _ctx: &JobContext<Limits>, _n: i64) -> Result<(), JobError> {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// An app whose kinds are built by its setup step, counting the setups.
fn tally_app(
    setups: &std::sync::Arc<std::sync::atomic::AtomicU64>,
    seen: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> App {
    let (setups, seen) = (setups.clone(), seen.clone());
    App::new("tallies")
        .about("Counts things, resumably")
        .setup(move |setup| async move {
            setups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(setup.database_url().ends_with("app.db"));
            let pool = setup.sqlite()?.pool().clone();
            Ok(iterjob::Registry::new().with(Tally { seen, pool }))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_builds_shared_state_once_for_the_commands_that_use_kinds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let setups = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let run = |args: &[&str]| {
        let app = tally_app(&setups, &seen);
        let mut full = vec!["tallies", "--database-url", url.as_str()];
        full.extend_from_slice(args);
        let cli = app.try_parse_from(full).expect("parse");
        app.run_cli(cli)
    };
    assert_eq!(
        run(&["enqueue", "tally", "--params", r#"{"up_to": 25}"#]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(setups.load(Ordering::SeqCst), 1, "enqueue checks the kind");
    assert_eq!(run(&["worker", "--until-idle"]).await, ExitCode::SUCCESS);
    assert_eq!(setups.load(Ordering::SeqCst), 2, "once per command");
    assert_eq!(seen.load(Ordering::SeqCst), 25, "every item used the state");
    // commands that only look at stored jobs never build the app's state
    for args in [&["jobs"][..], &["show", "1"], &["queues"], &["pause", "1"]] {
        run(args).await;
    }
    assert_eq!(
        setups.load(Ordering::SeqCst),
        2,
        "read-only commands skip setup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_setup_is_one_error_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let app = App::new("broken").setup(|_setup| async move {
        anyhow::bail!("cannot reach the payments API at http://127.0.0.1:1")
    });
    let cli = app
        .try_parse_from(["broken", "--database-url", &url, "worker"])
        .expect("parse");
    assert_eq!(app.run_cli(cli).await, ExitCode::FAILURE);
}

#[test]
fn the_binary_is_the_users_name_about_and_version_and_has_no_demo() {
    let app = App::new("tallies")
        .about("Counts things, resumably")
        .version("3.1.4");
    let help = app.try_parse_from(["tallies", "--help"]).unwrap_err();
    let help = help.to_string();
    assert!(help.starts_with("Counts things, resumably"), "{help}");
    assert!(help.contains("Usage: tallies"), "{help}");
    assert!(
        !help.contains("demo"),
        "the demo is the iterjob binary's: {help}"
    );
    let version = app.try_parse_from(["tallies", "--version"]).unwrap_err();
    assert_eq!(version.to_string().trim(), "tallies 3.1.4");

    // no version given: no --version that would print iterjob's
    let bare = App::new("plain");
    let error = bare.try_parse_from(["plain", "--version"]).unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    let help = bare
        .try_parse_from(["plain", "--help"])
        .unwrap_err()
        .to_string();
    assert!(help.starts_with("plain: run and manage"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_without_the_demo_refuses_it_by_name() {
    let app = App::new("tallies");
    let cli = app.try_parse_from(["tallies", "demo"]).expect("parse");
    assert_eq!(app.run_cli(cli).await, ExitCode::FAILURE);
}

/// A kind whose every run fails for good.
struct AlwaysFails;

impl Job for AlwaysFails {
    const KIND: &'static str = "always_fails";
    type Params = ();
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _: &(),
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(0..3, cursor))
    }

    async fn process(&self, _ctx: &JobContext<()>, _n: i64) -> Result<(), JobError> {
        Err(JobError::fatal("the upstream rejected the request"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_until_idle_exits_1_when_a_job_it_ran_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let run = |args: &[&str]| {
        let app = App::new("myapp").register(Count).register(AlwaysFails);
        let mut full = vec!["myapp", "--database-url", url.as_str()];
        full.extend_from_slice(args);
        let cli = app.try_parse_from(full).expect("parse");
        app.run_cli(cli)
    };
    assert_eq!(run(&["enqueue", "count"]).await, ExitCode::SUCCESS);
    assert_eq!(
        run(&["worker", "--until-idle"]).await,
        ExitCode::SUCCESS,
        "all completed"
    );
    assert_eq!(run(&["enqueue", "always_fails"]).await, ExitCode::SUCCESS);
    assert_eq!(
        run(&["worker", "--until-idle"]).await,
        ExitCode::FAILURE,
        "a script must not read a failed job as success"
    );
    // nothing of its own failed this time
    assert_eq!(run(&["enqueue", "count"]).await, ExitCode::SUCCESS);
    assert_eq!(run(&["worker", "--until-idle"]).await, ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_for_a_kind_that_cannot_partition_are_refused_at_enqueue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let app = App::new("myapp").register(Count);
    let cli = app
        .try_parse_from([
            "myapp",
            "--database-url",
            &url,
            "enqueue",
            "count",
            "--partitions",
            "4",
        ])
        .expect("parse");
    assert_eq!(app.run_cli(cli).await, ExitCode::FAILURE);
    let store = iterjob_sqlite::SqliteStore::connect(&url)
        .await
        .expect("open");
    assert!(
        store.job_get(1).await.expect("get").is_none(),
        "nothing enqueued"
    );
    let registry = iterjob::Registry::new().with(Count);
    let error = registry
        .check_partitions("count", 4)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("job kind `count` cannot be split into partitions")
            && error.contains("PARTITIONABLE")
            && error.contains("without partitions"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_never_migrate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    let url = format!("sqlite://{}", path.display());
    let run = |args: &[&str]| {
        let app = App::new("myapp").register(Count);
        let mut full = vec!["myapp", "--database-url", url.as_str()];
        full.extend_from_slice(args);
        let cli = app.try_parse_from(full).expect("parse");
        app.run_cli(cli)
    };
    let tables = || async {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
            .fetch_one(&pool)
            .await
            .expect("count");
        let version: Option<i64> = if n > 0 {
            sqlx::query_scalar("SELECT MAX(version) FROM iterjob_schema_migrations")
                .fetch_one(&pool)
                .await
                .expect("version")
        } else {
            None
        };
        pool.close().await;
        (n, version)
    };
    // an SQLite file that is not (yet) a store: `jobs` leaves it so
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("create");
        pool.close().await;
    }
    assert_eq!(run(&["jobs"]).await, ExitCode::FAILURE);
    assert_eq!(tables().await, (0, None), "no tables created");

    // a store one schema version behind: `show`, `jobs`, `pause` refuse, changing nothing
    assert_eq!(run(&["migrate"]).await, ExitCode::SUCCESS);
    let (_, current) = tables().await;
    let current = current.expect("migrated");
    // (its record hidden away, as a store of the previous release would lack it)
    let hide = |sql: &'static str| {
        let url = url.clone();
        async move {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
            sqlx::query(sql).execute(&pool).await.expect(sql);
            pool.close().await;
        }
    };
    hide(
        "CREATE TABLE hidden AS SELECT * FROM iterjob_schema_migrations \
         WHERE version = (SELECT MAX(version) FROM iterjob_schema_migrations)",
    )
    .await;
    hide("DELETE FROM iterjob_schema_migrations WHERE version IN (SELECT version FROM hidden)")
        .await;
    for args in [&["jobs"][..], &["show", "1"], &["pause", "1"], &["queues"]] {
        assert_eq!(run(args).await, ExitCode::FAILURE, "{args:?}");
        assert_eq!(
            tables().await.1,
            Some(current - 1),
            "{args:?} left the schema alone"
        );
    }
    let error = iterjob_cli::open_existing_store(&url).await.unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains(&format!(
            "schema version {}, older than this build's {current}",
            current - 1
        )) && error.contains("run `migrate`"),
        "{error}"
    );
    // back to the current schema: read-only commands work again
    hide("INSERT INTO iterjob_schema_migrations SELECT * FROM hidden").await;
    assert_eq!(run(&["enqueue", "count"]).await, ExitCode::SUCCESS);
    assert_eq!(tables().await.1, Some(current));
    assert_eq!(run(&["jobs"]).await, ExitCode::SUCCESS);
}
