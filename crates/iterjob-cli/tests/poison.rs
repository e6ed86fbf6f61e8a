//! A job that kills its worker process every time it reaches the same item ends
//! failed after a few crashes instead of looping forever, with an error that says so.

mod support;

use std::time::Duration;

use support::{Sandbox, stderr, stdout};

#[test]
fn job_that_keeps_killing_its_worker_ends_failed() {
    let s = Sandbox::new();
    let setup = s.run(&[
        "demo",
        "--products",
        "2000",
        "--api-latency",
        "1ms",
        "--interrupt-after",
        "50ms",
    ]);
    assert!(
        setup.status.success(),
        "{} {}",
        stdout(&setup),
        stderr(&setup)
    );
    // park the demo job; enqueue the poison one
    let o = s.run(&["cancel", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let params = format!(
        r#"{{"database_url": "{}", "abort_at_product": 700, "api_latency_ms": 200}}"#,
        s.db_url()
    );
    let o = s.run(&["enqueue", "demo_sync_products", "--params", &params]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mut crashes = 0;
    for _ in 0..8 {
        let o = s.run(&[
            "worker",
            "--lease",
            "1s",
            "--heartbeat-interval",
            "200ms",
            "--poll-interval",
            "50ms",
            "--until-idle",
        ]);
        if o.status.success() {
            break; // nothing left to claim: the job has ended
        }
        assert!(
            stderr(&o).contains("aborting the process at product 700"),
            "{}",
            stderr(&o)
        );
        crashes += 1;
        std::thread::sleep(Duration::from_millis(1100)); // let the dead worker's lease expire
    }
    assert!(
        (3..=4).contains(&crashes),
        "the worker died {crashes} times"
    );

    let o = s.run(&["show", "2", "--json"]);
    assert!(o.status.success());
    let job: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["crashes"], 3, "{job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("lost its lease 3 times without progress"),
        "{error}"
    );
    // the first run checkpointed its progress before the crash; nothing after the
    // poison product was ever recorded as done
    let done = job["items_done"].as_u64().expect("items_done");
    assert!(done > 0 && done < 700, "{job}");
    assert_eq!(job["cursor"][0].as_u64(), Some(done), "{job}");
}
