//! An autoscaler that sees nothing but the backlog metric: it reads `iterjob queues
//! --json` (the numbers `/metrics` exports) and starts worker processes with
//! `--exit-when-idle`, as a KEDA rule or a spot fleet would; the workers stop by
//! themselves once the queue is drained. The backlog reaches zero and every item of
//! the job is walked exactly once.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Sandbox, stderr, stdout};

/// Jobs one worker process should take on: two slots, about two jobs each.
const JOBS_PER_WORKER: u64 = 4;
const MAX_WORKERS: usize = 3;

fn backlog(sandbox: &Sandbox) -> (u64, u64, f64) {
    let out = sandbox.run(&["queues", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let queues: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("queues JSON");
    let mut waiting = 0;
    let mut running = 0;
    let mut work = 0.0;
    for q in queues.as_array().expect("an array") {
        waiting += q["waiting"].as_u64().expect("waiting");
        running += q["counts"]["running"].as_u64().expect("running");
        work += q["work_left_secs"].as_f64().expect("work left");
    }
    (waiting, running, work)
}

#[test]
fn an_autoscaler_on_the_backlog_metric_drains_the_queue_and_scales_to_zero() {
    let sandbox = Sandbox::new();
    // the products table, and one finished demo job whose parameters we reuse
    let out = sandbox.run(&["demo", "--products", "4000", "--api-latency", "0ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "1", "--json"]))).unwrap();
    let mut params = first["params"].clone();
    // 160 batches of 25 products, 40 ms of "API" each: about 6 s of one slot's work
    params["api_latency_ms"] = 40.into();
    params["batch_size"] = 25.into();
    let params = params.to_string();
    // the backlog: a job walked as 8 partitions (8 jobs for the workers)
    let out = sandbox.run(&[
        "enqueue",
        "demo_sync_products",
        "--params",
        &params,
        "--partitions",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let started = Instant::now();
    let mut workers: Vec<Child> = Vec::new();
    let mut most = 0;
    let mut launched = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the backlog was not drained in 2 minutes"
        );
        // reap the workers that stopped by themselves
        let mut alive = Vec::new();
        for mut worker in workers.drain(..) {
            match worker.try_wait().expect("try_wait") {
                Some(status) => assert!(status.success(), "a worker exited with {status}"),
                None => alive.push(worker),
            }
        }
        workers = alive;
        let (waiting, running, _) = backlog(&sandbox);
        if waiting == 0 && running == 0 && workers.is_empty() {
            break;
        }
        let wanted = (waiting.div_ceil(JOBS_PER_WORKER) as usize).min(MAX_WORKERS);
        while workers.len() < wanted {
            let child = sandbox
                .cmd(&[
                    "worker",
                    "--concurrency",
                    "2",
                    "--exit-when-idle",
                    "1s",
                    "--poll-interval",
                    "100ms",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a worker");
            workers.push(child);
            launched += 1;
        }
        most = most.max(workers.len());
        std::thread::sleep(Duration::from_millis(200));
    }

    assert!(
        most >= 2,
        "the backlog of 8 partitions scaled out to {most} workers"
    );
    assert!(launched >= 2);
    let (waiting, running, work) = backlog(&sandbox);
    assert_eq!((waiting, running), (0, 0));
    assert_eq!(work, 0.0, "no work left");
    let job: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.run(&["show", "2", "--json"]))).unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["items_done"], 4000, "every product once: {job}");
}
