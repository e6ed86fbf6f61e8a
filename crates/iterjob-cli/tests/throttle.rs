//! The operator's throttle switch across worker processes: `iterjob throttle on`
//! reaches three `iterjob worker` processes within about a second (every partition
//! goes back to its queue, nothing runs, each worker logs why), `show` says why a
//! partition waits, and `throttle off` lets them finish — every product synced
//! exactly once.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use support::{Sandbox, stderr, stdout};

fn running(sandbox: &Sandbox) -> u64 {
    let out = sandbox.run(&["queues", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let queues: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("queues JSON");
    queues
        .as_array()
        .expect("an array")
        .iter()
        .map(|q| q["counts"]["running"].as_u64().unwrap_or(0))
        .sum()
}

async fn synced(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(sync_count), 0) FROM demo_products")
        .fetch_one(pool)
        .await
        .expect("count")
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switch_holds_back_three_worker_processes_and_off_lets_them_finish() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["demo", "--products", "6000", "--api-latency", "0ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pool = SqlitePoolOptions::new()
        .connect(&sandbox.db_url())
        .await
        .expect("open db");
    sqlx::query("UPDATE demo_products SET sync_count = 0, synced_at = NULL")
        .execute(&pool)
        .await
        .expect("reset the products");
    let first: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "1", "--json"]))).unwrap();
    let mut params = first["params"].clone();
    // 1,200 batches of 5 products, 30 ms of "API" each: 36 s of one slot's work
    params["api_latency_ms"] = 30.into();
    params["batch_size"] = 5.into();
    let out = sandbox.run(&[
        "enqueue",
        "demo_sync_products",
        "--params",
        &params.to_string(),
        "--partitions",
        "6",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut workers: Vec<(Child, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let log = sandbox.path().join(format!("worker-{i}.log"));
            let file = std::fs::File::create(&log).expect("log file");
            let child = sandbox
                .cmd(&[
                    "worker",
                    "--concurrency",
                    "2",
                    "--poll-interval",
                    "100ms",
                    "--throttle-backoff",
                    "500ms",
                ])
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .expect("start a worker");
            (child, log)
        })
        .collect();
    wait_until(
        "partitions running on the workers",
        Duration::from_secs(30),
        || running(&sandbox) >= 4,
    );

    let out = sandbox.run(&["throttle", "on", "--reason", "incident 7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("throttle on for every job"),
        "{}",
        stdout(&out)
    );
    let switched = Instant::now();
    wait_until("every run sent back", Duration::from_secs(5), || {
        running(&sandbox) == 0
    });
    let reached = switched.elapsed();
    let before = synced(&pool).await;
    assert!(before > 0 && before < 6000, "mid-way: {before}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        running(&sandbox),
        0,
        "nothing claimed while the switch is on"
    );
    assert_eq!(
        synced(&pool).await,
        before,
        "nothing synced while the switch is on"
    );

    let list = stdout(&sandbox.run(&["throttle", "list"]));
    assert!(
        list.contains("every job") && list.contains("incident 7"),
        "{list}"
    );
    // a partition says why it waits
    let shown: Vec<String> = (3..=8)
        .map(|id| stdout(&sandbox.run(&["show", &id.to_string()])))
        .collect();
    assert!(
        shown.iter().any(|s| s.contains("throttled")
            && s.contains("the operator's switch")
            && s.contains("incident 7")),
        "{shown:#?}"
    );

    let out = sandbox.run(&["throttle", "off"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("throttle off for every job"),
        "{}",
        stdout(&out)
    );
    let again = sandbox.run(&["throttle", "off"]);
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    wait_until("the job completed", Duration::from_secs(120), || {
        let job: serde_json::Value =
            serde_json::from_str(&stdout(&sandbox.run(&["show", "2", "--json"]))).unwrap();
        job["state"] == "completed"
    });

    for (child, _) in &mut workers {
        let pid = child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
    }
    for (child, log) in &mut workers {
        let status = child.wait().expect("wait");
        assert!(status.success(), "worker exited with {status}");
        let text = std::fs::read_to_string(&*log).unwrap_or_default();
        assert!(
            text.contains("backpressure: operator holds back every job"),
            "each worker logs the signal: {text}"
        );
    }
    let (never, once, more): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sync_count = 0), COUNT(*) FILTER (WHERE sync_count = 1), \
         COUNT(*) FILTER (WHERE sync_count > 1) FROM demo_products",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(
        (never, once, more),
        (0, 6000, 0),
        "every product synced exactly once"
    );
    assert!(
        reached < Duration::from_secs(3),
        "the switch reached every worker's runs in {reached:?}"
    );
}
