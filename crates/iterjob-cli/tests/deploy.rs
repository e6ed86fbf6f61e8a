//! What a deploy expects of `iterjob worker`, as the real binary: every flag has an
//! environment variable, shown in `--help`; `--health` serves liveness and
//! readiness, and readiness turns false as soon as SIGTERM arrives, while running
//! jobs are still checkpointing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Sandbox, assert_error, stderr, stdout};

/// GET `path`: (status line, body), or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_worker_flag_has_an_environment_variable() {
    let s = Sandbox::new();
    let help = stdout(&s.run(&["worker", "--help"]));
    for var in [
        "ITERJOB_CONCURRENCY",
        "ITERJOB_QUEUES",
        "ITERJOB_LEASE",
        "ITERJOB_MAX_RUNTIME",
        "ITERJOB_SHUTDOWN_TIMEOUT",
        "ITERJOB_EXIT_WHEN_IDLE",
        "ITERJOB_KEEP_FAILED",
        "ITERJOB_REPLICA_URLS",
        "ITERJOB_HEALTH",
        "ITERJOB_DASHBOARD",
        "ITERJOB_DATABASE_URL",
        "ITERJOB_LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing:\n{help}"
        );
    }
    // every option of the worker's help names its variable (but -v and --help)
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent <= 6 {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(blocks.len() > 25, "{help}");
    for block in &blocks {
        if block.contains("--help") || block.contains("--verbose") {
            continue;
        }
        assert!(block.contains("[env: "), "no variable for:\n{block}");
    }

    // a value from the environment is checked like the flag's
    let o = s
        .cmd(&["worker", "--until-idle"])
        .env("ITERJOB_CONCURRENCY", "0")
        .output()
        .unwrap();
    assert_error(&o, 2, &["'0'", "--concurrency"]);
    // and used: queues from the environment, comma-separated
    let o = s
        .cmd(&["worker", "--until-idle"])
        .env("ITERJOB_QUEUES", "mail,billing")
        .env("ITERJOB_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn readiness_follows_the_store_and_turns_false_on_sigterm_before_jobs_stop() {
    let s = Sandbox::new();
    let setup = s.run(&[
        "demo",
        "--products",
        "2000",
        "--api-latency",
        "20ms",
        "--interrupt-after",
        "50ms",
    ]);
    assert!(setup.status.success(), "{}", stderr(&setup));
    assert!(s.run(&["cancel", "1"]).status.success());
    // a job whose every batch takes 3 s: the worker's shutdown waits for it
    let params = format!(
        r#"{{"database_url": "{}", "api_latency_ms": 3000}}"#,
        s.db_url()
    );
    let o = s.run(&["enqueue", "demo_sync_products", "--params", &params]);
    assert!(o.status.success(), "{}", stderr(&o));

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = s
        .cmd(&["worker", "--health", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((status, body)) = http_get(port, "/readyz")
            && status.contains(" 200")
        {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(Instant::now() < deadline, "never ready on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http_get(port, "/healthz").expect("liveness answers");
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(body, "ok\n");
    // wait for the job to be running (its first batch sleeps 3 s)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stdout(&s.run(&["show", "2"])).contains("running") {
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(100));
    }

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    let not_ready = loop {
        let answer = http_get(port, "/readyz");
        if let Some((status, body)) = &answer
            && status.contains(" 503")
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "readiness still {answer:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(not_ready, "not ready: shutting down\n");
    // the worker is still finishing its batch: alive, not ready
    assert!(child.try_wait().unwrap().is_none(), "still checkpointing");
    let (status, _) = http_get(port, "/healthz").expect("liveness while stopping");
    assert!(status.contains(" 200"), "{status}");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful stop: {exit:?}");
    let job = stdout(&s.run(&["show", "2"]));
    assert!(
        job.contains("queued"),
        "interrupted, back in its queue:\n{job}"
    );
}
