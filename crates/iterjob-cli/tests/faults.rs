//! Faults a worker meets for real, reproduced for real: the binary's worker must come
//! back from each by itself, never keep running as a zombie, never use a job's
//! attempts on a fault that is not the job's. After each fault the invariants are
//! checked: no job left `running`, no product skipped, none synced twice (the demo
//! is exactly-once: each batch's updates commit with its cursor).
//!
//! The rest of the fault suite: SIGKILL in `kill.rs` and `iterjob-chaos`, a
//! PostgreSQL restart in `iterjob-chaos/tests/outage.rs`. RELIABILITY.md has the
//! figures.

mod support;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stderr, stdout};

/// A tmpfs of a fixed size, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it). Needs root, which CI
    /// has: there, failing to mount fails the test; elsewhere it is skipped.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        if status.as_ref().is_ok_and(|s| s.success()) {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a {size} tmpfs (CI runs as root): {status:?}"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it with `options` (`ro`, `rw`).
    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).expect("create filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.sync_all();
    written
}

/// The demo's job: its state, items done and attempts used, read from the database
/// file.
async fn job_state(db: &Path) -> (String, i64, i64) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    let row: (String, i64, i64) =
        sqlx::query_as("SELECT state, items_done, attempts FROM iterjob_jobs WHERE id = 1")
            .fetch_one(&pool)
            .await
            .expect("job 1");
    pool.close().await;
    row
}

/// How many products were synced 0, 1 and more than once.
async fn sync_counts(db: &Path) -> (i64, i64, i64) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    let row = sqlx::query_as(
        "SELECT COUNT(CASE WHEN sync_count = 0 THEN 1 END),
                COUNT(CASE WHEN sync_count = 1 THEN 1 END),
                COUNT(CASE WHEN sync_count > 1 THEN 1 END)
         FROM demo_products",
    )
    .fetch_one(&pool)
    .await
    .expect("sync counts");
    pool.close().await;
    row
}

/// Jobs left `running` (whatever their lease).
async fn running(db: &Path) -> i64 {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM iterjob_jobs WHERE state = 'running'")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// The demo's job set up in `sandbox` and stopped after `after`, not done.
fn demo(sandbox: &Sandbox, products: &str, api_latency: &str, after: &str) {
    let setup = sandbox.run(&[
        "demo",
        "--products",
        products,
        "--api-latency",
        api_latency,
        "--interrupt-after",
        after,
    ]);
    assert!(
        setup.status.success(),
        "{}{}",
        stdout(&setup),
        stderr(&setup)
    );
}

/// Polls job 1 until it is completed or failed, at most `limit`; returns its state,
/// items done and attempts, and how long that took.
async fn wait_finished(db: &Path, limit: Duration) -> (String, i64, i64, Duration) {
    let start = Instant::now();
    loop {
        let (state, done, attempts) = job_state(db).await;
        if state == "completed" || state == "failed" || start.elapsed() > limit {
            return (state, done, attempts, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until job 1 has done more than `items` items; when it happened, or `None`
/// after `limit`.
async fn try_progress(db: &Path, items: i64, limit: Duration) -> Option<Instant> {
    let start = Instant::now();
    loop {
        let (state, done, _) = job_state(db).await;
        if done > items || state == "completed" {
            return Some(Instant::now());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a write transaction can start now (SQLite has one writer: a worker
/// stopped inside a commit holds the lock).
async fn write_lock_free(db: &Path) -> bool {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let options = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_millis(300));
    let Ok(mut conn) = options.connect().await else {
        return false;
    };
    let free = sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .is_ok();
    if free {
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    }
    let _ = conn.close().await;
    free
}

/// Polls until job 1 has done more than `items` items; returns when it happened.
async fn wait_progress(db: &Path, items: i64, limit: Duration) -> Instant {
    let start = Instant::now();
    loop {
        let (state, done, _) = job_state(db).await;
        if done > items || state == "completed" {
            return Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "no progress past {items} items in {limit:?} ({state}, {done})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `sig` (as `kill` names it) to `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A worker whose SQLite database sits on a 2 MB tmpfs that fills up for three
/// seconds mid-job: afterwards the same worker finishes the job by itself (before the
/// connection hygiene, a connection left inside a failed transaction went back to
/// the pool and the worker kept claiming but could no longer release or rescue:
/// "attempted to call begin_with at non-zero transaction depth").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_for_seconds_leaves_no_zombie_sqlite_worker() {
    let Some(fs) = Tmpfs::mount("2M") else {
        return;
    };
    let db = fs.path().join("h.db");
    let sandbox = Sandbox::with_url(&format!("sqlite://{}", db.display()));
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "5000",
        "--api-latency",
        "100ms",
        "--interrupt-after",
        "1s",
    ]);
    assert!(setup.status.success(), "{}", stdout(&setup));
    // the WAL folded into the database, so the fill below leaves SQLite no room
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open db");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .expect("checkpoint");
    pool.close().await;

    let log_path: PathBuf = sandbox.path().join("worker.log");
    let log = File::create(&log_path).expect("log");
    let mut worker = sandbox
        .cmd(&["worker", "--lease", "6s", "--heartbeat-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&filler).expect("remove filler");

    let start = Instant::now();
    let (state, done, attempts) = loop {
        let (state, done, attempts) = job_state(&db).await;
        if state == "completed" || start.elapsed() > Duration::from_secs(60) {
            break (state, done, attempts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stuck = log.matches("non-zero transaction depth").count();
    // a full disk is not the job's fault: interruptions, no attempt used
    assert_eq!(
        (state.as_str(), stuck, attempts),
        ("completed", 0, 0),
        "after a full disk ({filled} bytes of filler), the worker did not finish the job \
         ({done} items done); its log:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let show = sandbox.run(&["show", "1"]);
    assert!(stdout(&show).contains("completed"), "{}", stdout(&show));
    assert_eq!(sync_counts(&db).await, (0, 5000, 0), "each product once");
    eprintln!(
        "figure: disk full 3 s ({filled} bytes of filler): job completed {:.1} s after the \
         disk was freed; attempts used 0",
        start.elapsed().as_secs_f64()
    );
}

/// Another process holds SQLite's write lock for 8 s, more than twice the worker's
/// 3 s lease, mid-job. The worker can neither renew its lease nor release the job
/// while the lock is held: its run stops, its release waits (its own rescuer
/// standing aside), and once the lock is free the job is handed back and finished.
/// A lock someone else holds is not the job's fault: no attempt, no crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_process_holding_the_sqlite_lock_past_the_lease_costs_nothing() {
    let sandbox = Sandbox::new();
    let db = sandbox.db();
    demo(&sandbox, "3000", "20ms", "500ms");
    let (_, before, _) = job_state(&db).await;
    let log_path = sandbox.path().join("worker.log");
    let mut worker = sandbox
        .cmd(&["worker", "--lease", "3s", "--heartbeat-interval", "500ms"])
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn worker");
    wait_progress(&db, before, Duration::from_secs(30)).await;

    // the lock, from a connection of our own, as another process would hold it
    let mut outside = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut outside)
        .await
        .expect("take the write lock");
    let (_, at_lock, _) = job_state(&db).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    sqlx::query("COMMIT")
        .execute(&mut outside)
        .await
        .expect("release the write lock");
    let released = Instant::now();
    drop(outside);
    let resumed = wait_progress(&db, at_lock + 100, Duration::from_secs(30)).await;
    let (state, done, attempts, _) = wait_finished(&db, Duration::from_secs(90)).await;
    signal(worker.id(), "-TERM");
    let status = worker.wait().expect("wait");
    let tail = log_tail(&log_path, 300);
    assert_eq!(
        (state.as_str(), done, attempts),
        ("completed", 3000, 0),
        "after an outside lock, the worker did not finish the job by itself \
         without using an attempt; its log:\n{tail}"
    );
    assert!(status.success(), "exits 0 on SIGTERM; log:\n{tail}");
    assert_eq!(sync_counts(&db).await, (0, 3000, 0), "each product once");
    assert_eq!(running(&db).await, 0);
    // the operator sees why the job went back to its queue
    let show = stdout(&sandbox.run(&["show", "1"]));
    assert!(
        show.contains("last error") && show.contains("no attempt used"),
        "{show}"
    );
    eprintln!(
        "figure: outside lock 8 s (lease 3 s): progress again {:.1} s after the lock \
         was released; attempts used 0",
        (resumed - released).as_secs_f64()
    );
}

/// A worker stopped with SIGSTOP for longer than its lease (a VM paused, a process
/// frozen by a debugger): a second worker takes the job over once the lease has
/// expired; when the first one is continued it finds its lease gone and stops its
/// stale run without writing (fenced by the run token), then goes on serving as a
/// healthy worker. No product is synced twice, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_is_fenced_and_comes_back_healthy() {
    let sandbox = Sandbox::new();
    let db = sandbox.db();
    demo(&sandbox, "4000", "20ms", "500ms");
    let (_, before, _) = job_state(&db).await;
    let worker = |name: &str| {
        let log = sandbox.path().join(format!("{name}.log"));
        let child = sandbox
            .cmd(&[
                "worker",
                "--lease",
                "2s",
                "--heartbeat-interval",
                "300ms",
                "--poll-interval",
                "100ms",
            ])
            .env("ITERJOB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"))
            .spawn()
            .expect("spawn worker");
        (child, log)
    };
    let (mut a, mut a_log) = worker("a");
    wait_progress(&db, before + 200, Duration::from_secs(30)).await;
    // SQLite has one writer: a worker stopped inside a batch's commit holds the write
    // lock and stops everyone (RELIABILITY.md, Limits). Then continue it and stop it
    // again at another moment; the takeover must happen within three stops.
    // B starts only once A is stopped holding the job's run and not the write lock.
    // A stop that lands on the lock is undone: A is continued and stopped for good
    // (SIGTERM hands the job back), and a fresh A takes the job and is stopped again
    // (the old A, having seen its store stall, would hold claims back by its default
    // backpressure, and a stall is not what this test is about).
    let mut b = None;
    let mut takeover = None;
    for attempt in 0..5 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while running(&db).await != 1 {
            assert!(
                Instant::now() < deadline,
                "A runs the job again ({:?})",
                job_state(&db).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal(a.id(), "-STOP");
        let stopped = Instant::now();
        // a commit A was in stays unfinished while A is stopped
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !write_lock_free(&db).await {
            eprintln!("stop {attempt}: A held the write lock; replacing it with a fresh A");
            signal(a.id(), "-CONT");
            signal(a.id(), "-TERM");
            assert!(a.wait().expect("wait a").success(), "A exits 0 on SIGTERM");
            (a, a_log) = worker(&format!("a{attempt}"));
            continue;
        }
        let (_, at_stop, _) = job_state(&db).await;
        if b.is_none() {
            b = Some(worker("b"));
        }
        if let Some(at) = try_progress(&db, at_stop + 50, Duration::from_secs(15)).await {
            takeover = Some((stopped, at));
            break;
        }
        eprintln!("stop {attempt}: B made no progress while A was stopped; continuing A");
        signal(a.id(), "-CONT");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (stopped, taken_over) =
        takeover.expect("B took the job over within five stops of A (A stopped off the lock)");
    let (mut b, b_log) = b.expect("B started");
    // A stays stopped past its lease and B's takeover, then wakes up mid-run
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(a.id(), "-CONT");
    let (state, done, _, _) = wait_finished(&db, Duration::from_secs(90)).await;
    // A must be a healthy worker again, not a zombie: it exits 0 on SIGTERM
    signal(a.id(), "-TERM");
    signal(b.id(), "-TERM");
    let a_status = a.wait().expect("wait a");
    let b_status = b.wait().expect("wait b");
    let (a_tail, b_tail) = (log_tail(&a_log, 20), log_tail(&b_log, 20));
    assert_eq!(
        (state.as_str(), done),
        ("completed", 4000),
        "A:\n{a_tail}\nB:\n{b_tail}"
    );
    assert_eq!(
        sync_counts(&db).await,
        (0, 4000, 0),
        "each product once, though A woke up holding a run; A:\n{a_tail}"
    );
    assert!(
        a_status.success() && b_status.success(),
        "both exit 0 on SIGTERM; A:\n{a_tail}\nB:\n{b_tail}"
    );
    assert!(
        std::fs::read_to_string(&a_log)
            .unwrap_or_default()
            .contains("lease lost"),
        "A noticed it lost its lease; A:\n{a_tail}"
    );
    assert_eq!(running(&db).await, 0);
    eprintln!(
        "figure: SIGSTOP past a 2 s lease: taken over {:.1} s after the stop",
        (taken_over - stopped).as_secs_f64()
    );
}

/// The connection slots run out while the worker's connections are cut: a role with
/// a connection limit of its own (so that the rest of the test server is left
/// alone) owns the store; mid-job the test takes every slot the role has left and
/// terminates the worker's connections, so that it must reconnect and is refused
/// ("too many connections") for 5 s. Then the slots are given back: the worker
/// reconnects by itself and finishes; no attempt used, nothing skipped or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_slots_exhausted_on_postgres_cost_nothing() {
    let server = std::env::var("ITERJOB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let admin = match sqlx::PgPool::connect(&server).await {
        Ok(pool) => pool,
        Err(err) => {
            support::unreachable(&format!("PostgreSQL at {server}"), err);
            return;
        }
    };
    let name = format!(
        "iterjob_slots_{:012x}",
        support::rand_u64() & 0xffff_ffff_ffff
    );
    const LIMIT: usize = 16;
    let (base, database) = server.rsplit_once('/').expect("a database in the URL");
    let database = database.split('?').next().unwrap_or(database);
    for statement in [
        format!("CREATE ROLE {name} LOGIN CONNECTION LIMIT {LIMIT}"),
        format!("CREATE SCHEMA {name} AUTHORIZATION {name}"),
        format!("GRANT CREATE ON DATABASE {database} TO {name}"),
    ] {
        sqlx::query(&statement)
            .execute(&admin)
            .await
            .expect("create role");
    }
    // dropped in reverse: the schema, what the role owns or was granted, the role
    let _drop_role = support::DropOnExit {
        url: server.clone(),
        statement: format!("DROP ROLE IF EXISTS {name}"),
    };
    let _drop_owned = support::DropOnExit {
        url: server.clone(),
        statement: format!("DROP OWNED BY {name}"),
    };
    let _drop_schema = support::DropOnExit {
        url: server.clone(),
        statement: format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
    };
    let host = base.rsplit_once('@').map_or(base, |(_, host)| host);
    let role_url = format!("postgres://{name}@{host}/{database}");
    let url = format!("{role_url}?schema={name}&options=-c%20search_path%3D{name}");
    let sandbox = Sandbox::with_url(&url);
    demo(&sandbox, "3000", "20ms", "500ms");
    let job = |admin: sqlx::PgPool, name: String| async move {
        let row: (String, i64, i64) = sqlx::query_as(&format!(
            "SELECT state::text, items_done, attempts::bigint FROM {name}.jobs WHERE id = 1"
        ))
        .fetch_one(&admin)
        .await
        .expect("job 1");
        row
    };
    let (_, before, _) = job(admin.clone(), name.clone()).await;
    let log_path = sandbox.path().join("worker.log");
    let mut worker = sandbox
        .cmd(&["worker", "--lease", "5s", "--heartbeat-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn worker");
    let start = Instant::now();
    loop {
        let (_, done, _) = job(admin.clone(), name.clone()).await;
        if done > before + 100 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // every slot the role has left, then the worker's own connections cut
    let mut held = Vec::new();
    let refused = loop {
        match sqlx::PgConnection::connect(&role_url).await {
            Ok(conn) => held.push(conn),
            Err(err) => break err.to_string(),
        }
        assert!(held.len() <= LIMIT, "the role's connection limit holds");
    };
    assert!(refused.contains("too many connections"), "{refused}");
    let mut ours = Vec::new();
    for conn in &mut held {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .expect("pid");
        ours.push(pid);
    }
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = $1 AND NOT (pid = ANY($2))",
    )
    .bind(&name)
    .bind(&ours)
    .fetch_one(&admin)
    .await
    .expect("terminate the worker's connections");
    assert!(cut > 0, "the worker had connections");
    let (_, at_cut, _) = job(admin.clone(), name.clone()).await;
    // the terminated backends free their slots as they exit: take those too
    let hold_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < hold_until {
        if let Ok(conn) = sqlx::PgConnection::connect(&role_url).await {
            held.push(conn);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, during, _) = job(admin.clone(), name.clone()).await;
    for conn in held {
        let _ = conn.close().await;
    }
    let freed = Instant::now();
    let resumed = loop {
        let (state, done, _) = job(admin.clone(), name.clone()).await;
        if done > during + 50 || state == "completed" {
            break Instant::now();
        }
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "no progress after the slots were freed; log:\n{}",
            log_tail(&log_path, 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let start = Instant::now();
    let (state, done, attempts) = loop {
        let (state, done, attempts) = job(admin.clone(), name.clone()).await;
        if state == "completed" || state == "failed" || start.elapsed() > Duration::from_secs(90) {
            break (state, done, attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    signal(worker.id(), "-TERM");
    let status = worker.wait().expect("wait");
    let tail = log_tail(&log_path, 300);
    assert_eq!(
        (state.as_str(), done, attempts),
        ("completed", 3000, 0),
        "after the slots ran out the worker did not finish by itself without an \
         attempt; its log:\n{tail}"
    );
    assert!(status.success(), "exits 0 on SIGTERM; log:\n{tail}");
    let (never, once, more): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(CASE WHEN sync_count = 0 THEN 1 END), \
                COUNT(CASE WHEN sync_count = 1 THEN 1 END), \
                COUNT(CASE WHEN sync_count > 1 THEN 1 END) FROM {name}.demo_products"
    ))
    .fetch_one(&admin)
    .await
    .expect("sync counts");
    assert_eq!((never, once, more), (0, 3000, 0), "each product once");
    let running: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {name}.jobs WHERE state = 'running'"
    ))
    .fetch_one(&admin)
    .await
    .expect("running");
    assert_eq!(running, 0);
    eprintln!(
        "figure: PostgreSQL slots exhausted 5 s, {cut} worker connections cut at item \
         {at_cut}: progress again {:.1} s after the slots were freed; attempts used 0",
        (resumed - freed).as_secs_f64()
    );
}

/// The database's file system is mounted read-only when a worker starts (a volume
/// attached read-only, a file system the kernel turned read-only after errors): the
/// worker refuses at once with one error line that says so, exit code 1, instead of
/// starting as a worker that cannot record anything. Once the file system is
/// writable again, a worker finishes the job from its checkpoint: nothing skipped,
/// nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_with_a_clear_error_and_nothing_is_lost() {
    let Some(fs) = Tmpfs::mount("16M") else {
        return;
    };
    let db = fs.path().join("ro.db");
    let sandbox = Sandbox::with_url(&format!("sqlite://{}", db.display()));
    demo(&sandbox, "3000", "20ms", "500ms");
    let (_, before, _) = job_state(&db).await;
    assert!(before < 3000, "the demo was interrupted before the end");
    fs.remount("ro");
    let start = Instant::now();
    let mut child = sandbox
        .cmd(&["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let exited = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    let err = stderr(&out);
    fs.remount("rw");
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(1),
        "a worker on a read-only database exits 1 at once; stderr: {err}"
    );
    assert!(
        err.contains("read-only") && err.contains(&fs.path().display().to_string()),
        "the error names the read-only file system: {err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    let refused_in = start.elapsed();

    let out = sandbox.run(&["worker", "--until-idle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (state, done, attempts) = job_state(&db).await;
    assert_eq!((state.as_str(), done, attempts), ("completed", 3000, 0));
    assert_eq!(sync_counts(&db).await, (0, 3000, 0), "each product once");
    eprintln!(
        "figure: read-only file system: worker refused in {:.2} s with exit 1; after \
         remounting read-write, the job finished from item {before}",
        refused_in.as_secs_f64()
    );
}

/// A database file this process may not write (another user's, mode 0644): every
/// command refuses at once with one error line naming the file and what to fix,
/// rather than SQLite's "unable to open database file". Run as `nobody` through
/// `setpriv` (CI runs as root; elsewhere skipped when that is impossible).
#[test]
fn a_database_this_process_may_not_write_is_refused_with_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let setup = sandbox.run(&["demo", "--products", "100"]);
    assert!(setup.status.success(), "{}", stderr(&setup));
    std::fs::set_permissions(sandbox.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    std::fs::set_permissions(sandbox.db(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod db");
    // a copy of the binary that `nobody` may run, wherever the checkout lives
    let binary = sandbox.path().join("iterjob-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_iterjob"), &binary).expect("copy the binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .expect("chmod binary");
    for args in [&["jobs"][..], &["worker", "--until-idle"][..]] {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&binary)
            .args(args)
            .current_dir(sandbox.path())
            .env_remove("ITERJOB_DATABASE_URL")
            .output();
        let out = match out {
            Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("setpriv:") => out,
            other => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot run as nobody (CI runs as root): {other:?}"
                );
                eprintln!("skipped: cannot run as another user here");
                return;
            }
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("may not write `iterjob.db`") && err.contains("owner or mode"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
}
