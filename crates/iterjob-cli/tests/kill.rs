//! A real worker process killed with SIGKILL mid-job: a second worker process takes
//! the job over after the lease expires and completes it; nothing is skipped. With
//! the demo's default exactly-once mode (each batch's updates and the cursor commit
//! in one transaction) no product is synced twice; in at-least-once mode only the
//! items since the last checkpoint run twice.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stderr, stdout};

async fn job_state(pool: &SqlitePool, id: i64) -> (String, i64) {
    sqlx::query_as("SELECT state, items_done FROM iterjob_jobs WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("job row")
}

async fn synced(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM demo_products WHERE sync_count > 0")
        .fetch_one(pool)
        .await
        .expect("count")
}

fn spawn_worker(sandbox: &Sandbox, lease: &str) -> Child {
    sandbox
        .cmd(&[
            "worker",
            "--lease",
            lease,
            "--heartbeat-interval",
            "300ms",
            "--poll-interval",
            "100ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

fn signal(child: &Child, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// What the store and the products said the moment worker A died.
struct AtKill {
    /// Products synced (committed).
    processed: i64,
    /// Items done as of the job's last stored checkpoint.
    checkpointed: i64,
    /// The stored cursor (the key of the last product done).
    cursor: Option<i64>,
}

/// Worker A runs job `id` and is killed with SIGKILL mid-way between checkpoints;
/// worker B takes over after the lease expires and completes the job.
async fn kill_mid_job_and_take_over(sandbox: &Sandbox, pool: &SqlitePool, id: i64) -> AtKill {
    let mut a = spawn_worker(sandbox, "2s");
    let start = Instant::now();
    loop {
        let (state, done) = job_state(pool, id).await;
        if state == "running" && done >= 600 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker A never got going ({state}, {done})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // mid-way between checkpoints
    signal(&a, "-KILL");
    let status = a.wait().expect("wait A");
    assert!(!status.success(), "A died of SIGKILL");

    let (state, checkpointed) = job_state(pool, id).await;
    assert_eq!(state, "running", "the dead worker still holds the lease");
    let processed = synced(pool).await;
    let cursor: Option<String> = sqlx::query_scalar("SELECT cursor FROM iterjob_jobs WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("cursor");
    let cursor = cursor.map(|c| {
        let c: serde_json::Value = serde_json::from_str(&c).expect("JSON cursor");
        c[0].as_i64().expect("an integer key")
    });

    // Worker B takes over once the lease expires, and finishes.
    let b = spawn_worker(sandbox, "2s");
    let start = Instant::now();
    loop {
        let (state, _) = job_state(pool, id).await;
        if state == "completed" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "worker B did not finish the job ({state})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&b, "-TERM");
    let out = b.wait_with_output().expect("wait B");
    assert!(
        out.status.success(),
        "B exits 0 on SIGTERM: {}",
        stderr(&out)
    );
    let _ = a.kill();
    AtKill {
        processed,
        checkpointed,
        cursor,
    }
}

/// How many products were synced 0, 1, 2 and more times.
async fn sync_counts(pool: &SqlitePool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sync_count = 0), COUNT(*) FILTER (WHERE sync_count = 1),
                COUNT(*) FILTER (WHERE sync_count = 2), COUNT(*) FILTER (WHERE sync_count > 2)
         FROM demo_products",
    )
    .fetch_one(pool)
    .await
    .expect("counts")
}

async fn assert_one_crash(pool: &SqlitePool, id: i64, min_runs: i64) {
    let (crashes, attempts, runs): (i64, i64, i64) =
        sqlx::query_as("SELECT crashes, attempts, runs FROM iterjob_jobs WHERE id = ?")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("job");
    assert!(runs >= min_runs, "runs: {runs}");
    assert_eq!(attempts, 1, "the crash used one attempt");
    assert_eq!(crashes, 0, "progress after the crash reset the crash count");
}

/// Products and demo job 1 (exactly once), via the demo, stopped at once (a clean
/// interruption).
async fn demo_setup(sandbox: &Sandbox, products: &str, api_latency: &str) -> SqlitePool {
    let setup = sandbox.run(&[
        "demo",
        "--products",
        products,
        "--api-latency",
        api_latency,
        "--interrupt-after",
        "200ms",
    ]);
    assert!(
        setup.status.success(),
        "{} {}",
        stdout(&setup),
        stderr(&setup)
    );
    SqlitePoolOptions::new()
        .connect(&sandbox.db_url())
        .await
        .expect("open db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_is_taken_over_after_lease_expiry() {
    let sandbox = Sandbox::new();
    let pool = demo_setup(&sandbox, "20000", "30ms").await;
    // At-least-once: park the demo job, start over with a job that commits the
    // products' updates on their own and leaves the cursor to the checkpoints.
    let o = sandbox.run(&["cancel", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    sqlx::query("UPDATE demo_products SET sync_count = 0, synced_at = NULL")
        .execute(&pool)
        .await
        .expect("reset the products");
    let params = format!(
        r#"{{"database_url": "{}", "api_latency_ms": 30, "exactly_once": false}}"#,
        sandbox.db_url()
    );
    let o = sandbox.run(&["enqueue", "demo_sync_products", "--params", &params]);
    assert!(o.status.success(), "{}", stderr(&o));

    let at_kill = kill_mid_job_and_take_over(&sandbox, &pool, 2).await;
    assert!(
        at_kill.processed >= at_kill.checkpointed,
        "the checkpoint never runs ahead of the work"
    );
    let at_risk = at_kill.processed - at_kill.checkpointed;

    let (never, once, twice, more) = sync_counts(&pool).await;
    assert_eq!(never, 0, "no product skipped");
    assert_eq!(more, 0, "no product synced three times");
    assert!(
        twice <= at_risk,
        "repeats ({twice}) only among the items since the last checkpoint ({at_risk})"
    );
    assert_eq!(once + twice, 20000);
    assert_one_crash(&pool, 2, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_exactly_once_worker_repeats_nothing() {
    let sandbox = Sandbox::new();
    // Short API latency: a good share of the time goes to the batches' transactions,
    // so the kill may well land inside one.
    let pool = demo_setup(&sandbox, "30000", "8ms").await;

    let at_kill = kill_mid_job_and_take_over(&sandbox, &pool, 1).await;
    // The cursor and the products' updates committed together: at the kill, the
    // stored progress names exactly the products synced.
    assert_eq!(
        at_kill.checkpointed, at_kill.processed,
        "stored progress = products synced, at the moment of the kill"
    );
    assert_eq!(
        at_kill.cursor,
        Some(at_kill.processed),
        "the stored cursor is the last synced product's id"
    );

    let (never, once, twice, more) = sync_counts(&pool).await;
    assert_eq!(never, 0, "no product skipped");
    assert_eq!((twice, more), (0, 0), "no product synced twice");
    assert_eq!(once, 30000);
    let done: i64 = sqlx::query_scalar("SELECT items_done FROM iterjob_jobs WHERE id = 1")
        .fetch_one(&pool)
        .await
        .expect("items_done");
    assert_eq!(done, 30000, "each product counted once");
    assert_one_crash(&pool, 1, 3).await;
}

/// The database a test's store and products live in: the SQLite file of its
/// sandbox, a fresh PostgreSQL schema (its `search_path` too, so the products land
/// there), or a fresh MySQL database.
enum Db {
    Sqlite(SqlitePool),
    Postgres(sqlx::PgPool, String),
    MySql(sqlx::MySqlPool),
}

impl Db {
    /// The store's jobs table.
    fn jobs(&self) -> String {
        match self {
            Db::Sqlite(_) | Db::MySql(_) => "iterjob_jobs".to_string(),
            Db::Postgres(_, schema) => format!("\"{schema}\".jobs"),
        }
    }

    /// Runs a query returning one row: its text column (a state), and its integers.
    async fn ints(&self, sql: &str) -> (Option<String>, Vec<i64>) {
        use sqlx::Row;
        macro_rules! read {
            ($pool:expr) => {{
                let row = sqlx::query(sql).fetch_one($pool).await.expect(sql);
                let mut ints = Vec::new();
                let mut state = None;
                for i in 0..row.len() {
                    if let Ok(n) = row.try_get::<i64, _>(i) {
                        ints.push(n);
                    } else if let Ok(text) = row.try_get::<String, _>(i) {
                        state = Some(text);
                    } else {
                        // MySQL marks text of a binary collation as binary
                        let bytes: Vec<u8> = row.try_get(i).expect("an integer or text");
                        state = Some(String::from_utf8(bytes).expect("UTF-8"));
                    }
                }
                (state, ints)
            }};
        }
        match self {
            Db::Sqlite(pool) => read!(pool),
            Db::Postgres(pool, _) => read!(pool),
            Db::MySql(pool) => read!(pool),
        }
    }
}

/// The parent's state, its partitions' summed progress, and how many it has.
async fn partitioned_state(db: &Db, parent: i64) -> (String, i64, i64) {
    let jobs = db.jobs();
    let (state, ints) = db
        .ints(&format!(
            "SELECT p.state,
                    CAST((SELECT COALESCE(SUM(items_done), 0) FROM {jobs} c WHERE c.parent_id = p.id) AS SIGNED_INT),
                    (SELECT COUNT(*) FROM {jobs} c WHERE c.parent_id = p.id)
             FROM {jobs} p WHERE p.id = {parent}"
        ).replace("SIGNED_INT", db.bigint()))
        .await;
    (state.expect("state"), ints[0], ints[1])
}

/// How many products were synced 0, 1, 2 and more times (any database).
async fn sync_counts_any(db: &Db) -> (i64, i64, i64, i64) {
    let (_, n) = db
        .ints(
            "SELECT COUNT(CASE WHEN sync_count = 0 THEN 1 END), COUNT(CASE WHEN sync_count = 1 THEN 1 END),
                    COUNT(CASE WHEN sync_count = 2 THEN 1 END), COUNT(CASE WHEN sync_count > 2 THEN 1 END)
             FROM demo_products",
        )
        .await;
    (n[0], n[1], n[2], n[3])
}

impl Db {
    /// The type a sum casts to, as this database writes it.
    fn bigint(&self) -> &'static str {
        match self {
            Db::MySql(_) => "SIGNED",
            _ => "BIGINT",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_partitioned_demo_repeats_and_skips_nothing() {
    let sandbox = Sandbox::new();
    let db = Db::Sqlite(
        SqlitePoolOptions::new()
            .connect(&format!("{}?mode=rwc", sandbox.db_url()))
            .await
            .expect("open db"),
    );
    partitioned_demo_killed(&sandbox, &db).await;
}

/// The same on PostgreSQL, in a fresh schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_partitioned_demo_on_postgres_repeats_and_skips_nothing() {
    let Some((url, pool, schema, _guard)) = support::postgres_target().await else {
        return;
    };
    let db = Db::Postgres(pool, schema);
    let sandbox = Sandbox::with_url(&url);
    partitioned_demo_killed(&sandbox, &db).await;
}

/// The same on MySQL/MariaDB, in a fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_partitioned_demo_on_mysql_repeats_and_skips_nothing() {
    let Some((url, pool, _guard)) = support::mysql_target().await else {
        return;
    };
    let db = Db::MySql(pool);
    let sandbox = Sandbox::with_url(&url);
    partitioned_demo_killed(&sandbox, &db).await;
}

/// A partitioned exactly-once demo job (its items' work and cursors committed
/// together, through `Transactional`), its workers killed with SIGKILL three times:
/// every product synced exactly once, each counted once.
async fn partitioned_demo_killed(sandbox: &Sandbox, db: &Db) {
    // three partitions, stopped at once: the workers below do the walking
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "30000",
        "--api-latency",
        "8ms",
        "--partitions",
        "3",
        "--interrupt-after",
        "300ms",
    ]);
    assert!(
        setup.status.success(),
        "{} {}",
        stdout(&setup),
        stderr(&setup)
    );

    // Kill a worker with SIGKILL three times, at varying moments, while its four slots
    // walk the three partitions (the idle slot splits them); a new worker takes over.
    let mut kills = 0;
    for round in 0..3u64 {
        let mut worker = spawn_worker(sandbox, "2s");
        let (_, before, _) = partitioned_state(db, 1).await;
        let start = Instant::now();
        loop {
            let (state, done, _) = partitioned_state(db, 1).await;
            if state == "completed" || done >= before + 1500 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no progress ({state}, {done})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let jitter = (start.elapsed().subsec_nanos() as u64 % 300) + round * 150;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        signal(&worker, "-KILL");
        let status = worker.wait().expect("wait");
        assert!(!status.success(), "died of SIGKILL");
        kills += 1;
        if partitioned_state(db, 1).await.0 == "completed" {
            break;
        }
    }

    let last = spawn_worker(sandbox, "2s");
    let start = Instant::now();
    // the job may already be complete: still give the worker the moment a process
    // needs to start before it is sent SIGTERM (a signal in its first milliseconds,
    // before main, ends any process)
    tokio::time::sleep(Duration::from_secs(1)).await;
    loop {
        let (state, _, _) = partitioned_state(db, 1).await;
        if state == "completed" {
            break;
        }
        if state == "failed" {
            let jobs = sandbox.run(&["jobs", "--json"]);
            let show = sandbox.run(&["show", "1"]);
            panic!(
                "the partitioned job failed:\n{}\n{}{}",
                stdout(&jobs),
                stdout(&show),
                stderr(&show)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not completed ({state})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&last, "-TERM");
    let out = last.wait_with_output().expect("wait");
    assert!(out.status.success(), "exits 0 on SIGTERM: {}", stderr(&out));

    let (never, once, twice, more) = sync_counts_any(db).await;
    assert_eq!(never, 0, "no product skipped");
    assert_eq!((twice, more), (0, 0), "no product synced twice");
    assert_eq!(once, 30000);
    let (state, done, partitions) = partitioned_state(db, 1).await;
    assert_eq!(
        (state.as_str(), done),
        ("completed", 30000),
        "each product counted once"
    );
    assert!(partitions >= 3, "{partitions} partitions");
    let jobs = db.jobs();
    let (_, runs) = db
        .ints(&format!(
            "SELECT CAST(COALESCE(SUM(runs), 0) AS {}) FROM {jobs} WHERE parent_id = 1",
            db.bigint()
        ))
        .await;
    assert!(
        kills >= 1 && runs[0] > partitions,
        "partitions were run again after the kills"
    );
    if !matches!(db, Db::Sqlite(_)) {
        return;
    }
    let show = sandbox.run(&["show", "1"]);
    assert!(
        stdout(&show).contains(&format!("partitions ({partitions})")),
        "{}",
        stdout(&show)
    );
    // the job list shows the partitions among the jobs; `--top-level` the job once
    let listed = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = sandbox.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("a JSON array of jobs")
    };
    let all = listed(&["jobs", "--json", "--limit", "1000"]);
    assert_eq!(
        all.len() as i64,
        1 + partitions,
        "the job and its partitions"
    );
    let top = listed(&["jobs", "--json", "--top-level"]);
    assert_eq!(top.len(), 1, "top-level: the partitioned job only");
    assert_eq!(top[0]["id"], 1);
    assert_eq!(top[0]["items_done"], 30000);
    // the table names each partition's parent, when partitions are listed
    let table = stdout(&sandbox.run(&["jobs"]));
    assert!(table.starts_with("ID  PARENT  KIND"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("2 ") && l.split_whitespace().nth(1) == Some("1"))
    );
    let table = stdout(&sandbox.run(&["jobs", "--top-level"]));
    assert!(table.starts_with("ID  KIND"), "{table}");
}
