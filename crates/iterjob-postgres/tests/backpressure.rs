//! The default backpressure against real PostgreSQL faults: a store whose writes are
//! slowed for real (a `pg_sleep` trigger on the jobs table), and a real streaming
//! replica (made by the test with `pg_basebackup`) whose replay is paused.
//!
//! Both need the test server; the replica test also runs PostgreSQL's own binaries
//! as the `postgres` user (the machine's tests run as root) and lets replication
//! connections from 127.0.0.1 in (`pg_hba.conf`), as CI's machine allows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{TempSchema, pg_url};
use iterjob::store::{JobId, JobState, NewJob, Store};
use iterjob::{Registry, SignalSource, Worker, WorkerConfig};
use iterjob_postgres::ReplicaLag;
use iterjob_testkit::scenarios::{CountingJob, CountingParams, fast_config};
use sqlx::{Connection, PgConnection};

fn config() -> WorkerConfig {
    let mut config = fast_config();
    config.control_interval = Duration::from_millis(100);
    config.backpressure.backoff = Duration::from_millis(500);
    config
}

async fn enqueue(store: &Arc<dyn Store>, job: &CountingJob, n: i64) -> JobId {
    let params = CountingParams {
        n,
        sleep_ms: 1,
        ..Default::default()
    };
    store
        .job_insert(&NewJob::of(job, &params).expect("params"))
        .await
        .expect("enqueue")
}

async fn wait_for(
    store: &Arc<dyn Store>,
    id: JobId,
    what: &str,
    limit: Duration,
    mut ok: impl FnMut(&iterjob::JobRecord) -> bool,
) -> iterjob::JobRecord {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = store.job_get(id).await.expect("get").expect("job");
        if ok(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id}: {what} did not happen within {limit:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every UPDATE of a schema's jobs table slowed for real: a trigger that sleeps
/// 150 ms, until [`SlowUpdates::stop`].
struct SlowUpdates {
    conn: PgConnection,
    schema: String,
}

impl SlowUpdates {
    async fn start(schema: &str) -> SlowUpdates {
        let mut conn = PgConnection::connect(&pg_url()).await.expect("connect");
        sqlx::query(&format!(
            "CREATE FUNCTION \"{schema}\".slow_down() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(0.15); RETURN NEW; END $$"
        ))
        .execute(&mut conn)
        .await
        .expect("create the trigger function");
        sqlx::query(&format!(
            "CREATE TRIGGER slow_down BEFORE UPDATE ON \"{schema}\".jobs \
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".slow_down()"
        ))
        .execute(&mut conn)
        .await
        .expect("create the trigger");
        SlowUpdates {
            conn,
            schema: schema.to_string(),
        }
    }

    async fn stop(mut self) {
        sqlx::query(&format!(
            "DROP TRIGGER slow_down ON \"{}\".jobs",
            self.schema
        ))
        .execute(&mut self.conn)
        .await
        .expect("drop the trigger");
        let _ = self.conn.close().await;
    }
}

/// Writes slowed for real (every UPDATE of the jobs table sleeps 150 ms in a
/// trigger) make the store-latency signal engage: the running job goes back to its
/// queue saying why; with the trigger gone the signal clears and the job finishes,
/// every item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_store_writes_throttle_jobs_until_the_store_recovers() {
    let Some(db) = TempSchema::new().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let job = CountingJob::new();
    let id = enqueue(&store, &job, 6_000).await;
    let worker = Arc::new(
        Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()),
            config(),
        )
        .expect("config"),
    );
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    // a baseline of fast checkpoints first (one every 20 ms)
    wait_for(
        &store,
        id,
        "a second of progress",
        Duration::from_secs(20),
        |r| r.items_done > 600,
    )
    .await;
    assert!(worker.throttles().is_empty(), "{:?}", worker.throttles());

    let slow = SlowUpdates::start(&db.name).await;

    let back = wait_for(
        &store,
        id,
        "sent back by the slow store",
        Duration::from_secs(30),
        |r| r.state == JobState::Queued && r.interruptions > 0,
    )
    .await;
    let why = back.last_error.clone().unwrap_or_default();
    assert!(why.contains("the store's latency"), "{why}");
    assert_eq!(back.attempts, 0, "no attempt used");
    let signals = worker.throttles();
    assert!(
        signals
            .iter()
            .any(|s| s.source == SignalSource::StoreLatency),
        "{signals:?}"
    );
    // held back: the job does not get on while the store stays slow
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = store.job_get(id).await.expect("get").expect("job");
    assert!(
        held.items_done <= back.items_done + 200,
        "little progress while the store is slow: {} then {}",
        back.items_done,
        held.items_done
    );

    slow.stop().await;
    wait_for(
        &store,
        id,
        "completed once the store recovered",
        Duration::from_secs(60),
        |r| r.state == JobState::Completed,
    )
    .await;
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
    assert_eq!(job.recorder.items(id), (0..6_000).collect::<Vec<_>>());
}

/// A long job that does not obey the default backpressure: it keeps checkpointing
/// while the store is slow, so the worker's latency samples follow the store.
struct Steady;

impl iterjob::Job for Steady {
    const KIND: &'static str = "steady";
    type Params = ();
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        _params: &(),
        cursor: Option<i64>,
    ) -> Result<impl iterjob::enumerator::Enumerator<i64, i64>, iterjob::JobError> {
        Ok(iterjob::enumerator::range(0..1_000_000, cursor))
    }

    async fn process(
        &self,
        _ctx: &iterjob::JobContext<()>,
        _item: i64,
    ) -> Result<(), iterjob::JobError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }

    fn settings(&self) -> iterjob::KindSettings {
        iterjob::KindSettings::default().backpressure(false)
    }
}

/// While the store is slow a worker claims one job per backoff (a probe); once the
/// store has recovered it claims at once, not at its next probe. The backoff here is
/// 30 s: a job enqueued while the store was slow must finish within 8 s of the store
/// recovering (it waited for the probe a backoff later before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_again_as_soon_as_a_slow_store_recovers() {
    let Some(db) = TempSchema::new().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let job = CountingJob::new();
    let mut config = config();
    config.backpressure.backoff = Duration::from_secs(30);
    let worker = Arc::new(
        Worker::new(
            Arc::clone(&store),
            Registry::new().with(job.clone()).with(Steady),
            config,
        )
        .expect("config"),
    );
    let steady = store
        .job_insert(&NewJob::of(&Steady, &()).expect("params"))
        .await
        .expect("enqueue");
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    // a baseline of fast checkpoints first (one every 20 ms)
    wait_for(
        &store,
        steady,
        "a second of progress",
        Duration::from_secs(20),
        |r| r.items_done > 400,
    )
    .await;

    let slow = SlowUpdates::start(&db.name).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !worker
        .throttles()
        .iter()
        .any(|s| s.source == SignalSource::StoreLatency)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store-latency signal did not engage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the worker's first probe has found nothing to claim by now; this job waits
    // for the next one, 30 s later, while the store stays slow
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quick = enqueue(&store, &job, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = store.job_get(quick).await.expect("get").expect("job");
    assert_eq!(
        held.state,
        JobState::Queued,
        "not claimed while the store is slow"
    );

    slow.stop().await;
    wait_for(
        &store,
        quick,
        "claimed and finished once the store recovered",
        Duration::from_secs(8),
        |r| r.state == JobState::Completed,
    )
    .await;
    assert!(
        !worker
            .throttles()
            .iter()
            .any(|s| s.source == SignalSource::StoreLatency),
        "{:?}",
        worker.throttles()
    );
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
}

/// A standby made by this test, stopped and deleted on drop.
struct Standby {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl Standby {
    /// `pg_basebackup` of the test server into a fresh directory, started on a free
    /// port as a hot standby streaming from it.
    async fn start() -> Standby {
        let bin = pg_bin();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("iterjob-standby-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        allow_replication_connections().await;
        std::fs::create_dir_all(&dir).expect("create the standby's directory");
        // PostgreSQL refuses a data directory others can read
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .expect("chmod 700 the standby's directory");
        }
        run_as_postgres(&["chown", "postgres:postgres"], &dir, &[]);
        let standby = Standby { dir, port, bin };
        let dir = standby.dir.to_str().expect("utf-8 path").to_string();
        run_as_postgres(
            &[
                standby.bin.join("pg_basebackup").to_str().unwrap(),
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-D",
                &dir,
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
            ],
            Path::new("/"),
            &[],
        );
        // Debian keeps the configuration outside the data directory: give the
        // standby its own
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             hot_standby = on\nhot_standby_feedback = on\nlogging_collector = off\n"
        );
        // a hot standby needs these at least as high as on its primary
        let mut primary = PgConnection::connect(&pg_url()).await.expect("connect");
        for setting in [
            "max_connections",
            "max_worker_processes",
            "max_wal_senders",
            "max_prepared_transactions",
            "max_locks_per_transaction",
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut primary)
                .await
                .expect(setting);
            conf.push_str(&format!("{setting} = {value}\n"));
        }
        let _ = primary.close().await;
        std::fs::write(standby.dir.join("postgresql.conf"), conf).expect("postgresql.conf");
        std::fs::write(
            standby.dir.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        std::fs::write(standby.dir.join("pg_ident.conf"), "").expect("pg_ident.conf");
        run_as_postgres(&["chown", "-R", "postgres:postgres"], &standby.dir, &[]);
        let log = format!("{dir}/standby.log");
        let _show_log = ShowLog(log.clone());
        run_as_postgres(
            &[
                standby.bin.join("pg_ctl").to_str().unwrap(),
                "-D",
                &dir,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
            Path::new("/"),
            &[],
        );
        // wait until it is streaming and answers as a standby
        for _ in 0..200 {
            if let Ok(mut conn) = PgConnection::connect(&standby.url()).await {
                let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await
                    .expect("ask the standby");
                assert!(recovering, "the copy must run as a standby");
                let _ = conn.close().await;
                return standby;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the standby on port {port} did not answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    async fn sql(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url())
            .await
            .expect("connect the standby");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        let _ = conn.close().await;
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap_or_default().to_string();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &dir, "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints the standby's log if the test fails while it is alive.
struct ShowLog(String);

impl Drop for ShowLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "standby log:\n{}",
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

/// The server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn pg_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL's binaries are not under {root:?}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_basebackup").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("pg_basebackup is installed (package postgresql)")
}

/// Runs `args` (with `path` appended, when not `/`) as the `postgres` user, or
/// directly for `chown`; panics with the output on failure.
fn run_as_postgres(args: &[&str], path: &Path, env: &[(&str, &str)]) {
    let mut command = if args[0] == "chown" {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    };
    if path != Path::new("/") {
        command.arg(path);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e} (the test runs as root)"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Lets replication connections from 127.0.0.1 in (trust, as every other
/// connection to the test server), once: appends the line to the server's
/// `pg_hba.conf` and reloads it.
async fn allow_replication_connections() {
    let mut conn = PgConnection::connect(&pg_url()).await.expect("connect");
    let hba: String = sqlx::query_scalar("SHOW hba_file")
        .fetch_one(&mut conn)
        .await
        .expect("hba_file");
    let line = "host replication all 127.0.0.1/32 trust";
    let text = std::fs::read_to_string(&hba).unwrap_or_else(|e| panic!("read {hba}: {e}"));
    if !text.lines().any(|l| l.trim() == line) {
        let mut text = text;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# added by iterjob's replica-lag test\n");
        text.push_str(line);
        text.push('\n');
        std::fs::write(&hba, text).unwrap_or_else(|e| panic!("write {hba}: {e}"));
        let _: bool = sqlx::query_scalar("SELECT pg_reload_conf()")
            .fetch_one(&mut conn)
            .await
            .expect("reload");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = conn.close().await;
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// A real streaming replica, its replay paused: its lag grows while the job writes
/// to the primary, the replica-lag check throttles the job (back to its queue,
/// saying which replica and how far behind), and once replay resumes the job
/// finishes, every item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_throttles_jobs_while_replay_is_paused() {
    let Some(db) = TempSchema::new().await else {
        return;
    };
    let standby = Standby::start().await;
    let lag = ReplicaLag::new(&standby.url(), Duration::from_secs(1)).expect("url");
    assert!(
        lag.lag().await.expect("the standby reports its lag") < Duration::from_secs(1),
        "caught up at start"
    );
    // the primary has standbys: its view works too
    let on_primary = ReplicaLag::new(&pg_url(), Duration::from_secs(1)).expect("url");
    on_primary
        .lag()
        .await
        .expect("the primary reports its standby's lag");

    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let job = CountingJob::new();
    let id = enqueue(&store, &job, 8_000).await;
    let mut registry = Registry::new().with(job.clone());
    registry.health_check(lag);
    let worker = Arc::new(Worker::new(Arc::clone(&store), registry, config()).expect("config"));
    let run = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.run().await })
    };
    wait_for(&store, id, "some progress", Duration::from_secs(20), |r| {
        r.items_done > 300
    })
    .await;
    standby.sql("SELECT pg_wal_replay_pause()").await;
    let back = wait_for(
        &store,
        id,
        "sent back by the lag",
        Duration::from_secs(30),
        |r| r.state == JobState::Queued && r.interruptions > 0,
    )
    .await;
    let why = back.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("replica-lag") && why.contains("behind its primary"),
        "{why}"
    );
    assert_eq!(back.attempts, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = store.job_get(id).await.expect("get").expect("job");
    assert_eq!(
        (held.state, held.items_done),
        (JobState::Queued, back.items_done),
        "held back while the replica lags"
    );

    standby.sql("SELECT pg_wal_replay_resume()").await;
    wait_for(
        &store,
        id,
        "completed once replay resumed",
        Duration::from_secs(60),
        |r| r.state == JobState::Completed,
    )
    .await;
    worker.shutdown_token().cancel();
    run.await.expect("join").expect("worker");
    assert_eq!(job.recorder.items(id), (0..8_000).collect::<Vec<_>>());
    drop(standby);
}

/// A replica URL that names a primary without standbys, or nothing at all, throttles
/// with a message saying what is wrong, never reads as healthy.
#[tokio::test]
async fn a_replica_check_that_cannot_measure_says_why() {
    if !common::require_pg().await {
        return;
    }
    let nowhere = ReplicaLag::new(
        "postgres://postgres@127.0.0.1:1/test",
        Duration::from_secs(1),
    )
    .expect("url");
    assert!(nowhere.lag().await.is_err());
    assert!(ReplicaLag::new("mysql://x@y/z", Duration::from_secs(1)).is_err());
}
