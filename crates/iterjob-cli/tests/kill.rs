//! A real worker process killed with SIGKILL mid-job: a second worker process takes
//! the job over after the lease expires and completes it; nothing is skipped, and
//! only the items since the last checkpoint run twice.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stderr, stdout};

async fn job_state(pool: &SqlitePool) -> (String, i64) {
    sqlx::query_as("SELECT state, items_done FROM iterjob_jobs WHERE id = 1")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_is_taken_over_after_lease_expiry() {
    let sandbox = Sandbox::new();
    // Products and the job, via the demo, stopped at once (a clean interruption).
    let setup = sandbox.run(&[
        "demo",
        "--products",
        "20000",
        "--api-latency",
        "30ms",
        "--interrupt-after",
        "200ms",
    ]);
    assert!(
        setup.status.success(),
        "{} {}",
        stdout(&setup),
        stderr(&setup)
    );
    let pool = SqlitePoolOptions::new()
        .connect(&sandbox.db_url())
        .await
        .expect("open db");

    // Worker A runs the job; kill -9 it while it works, after a checkpoint or two.
    let mut a = spawn_worker(&sandbox, "2s");
    let start = Instant::now();
    loop {
        let (state, done) = job_state(&pool).await;
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

    let (state, checkpointed) = job_state(&pool).await;
    assert_eq!(state, "running", "the dead worker still holds the lease");
    let processed = synced(&pool).await;
    assert!(
        processed >= checkpointed,
        "the checkpoint never runs ahead of the work"
    );
    let at_risk = processed - checkpointed;

    // Worker B takes over once the lease expires, and finishes.
    let b = spawn_worker(&sandbox, "2s");
    let start = Instant::now();
    loop {
        let (state, _) = job_state(&pool).await;
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

    let (never, once, twice, more): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sync_count = 0), COUNT(*) FILTER (WHERE sync_count = 1),
                COUNT(*) FILTER (WHERE sync_count = 2), COUNT(*) FILTER (WHERE sync_count > 2)
         FROM demo_products",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(never, 0, "no product skipped");
    assert_eq!(more, 0, "no product synced three times");
    assert!(
        twice <= at_risk,
        "repeats ({twice}) only among the items since the last checkpoint ({at_risk})"
    );
    assert_eq!(once + twice, 20000);
    let (crashes, attempts, runs): (i64, i64, i64) =
        sqlx::query_as("SELECT crashes, attempts, runs FROM iterjob_jobs WHERE id = 1")
            .fetch_one(&pool)
            .await
            .expect("job");
    assert!(runs >= 3, "setup run, A, B: {runs}");
    assert_eq!(attempts, 1, "the crash used one attempt");
    assert_eq!(crashes, 0, "progress after the crash reset the crash count");
    let _ = a.kill();
}
