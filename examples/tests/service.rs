//! The example service (`examples/service.rs`), started in this test's process:
//! signups and a backfill enqueued through its HTTP routes finish on its worker,
//! on the one pool the routes, the kinds and the store share; the dashboard answers
//! beside them; a rolled-back signup leaves no job.

#[path = "../service.rs"]
mod service;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use iterjob::CancellationToken;

/// One HTTP/1.0 request: (status code, body).
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_over_http_finish_on_the_services_own_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("service.db").display());
    let shutdown = CancellationToken::new();
    let (addr, running) = service::start(&url, "127.0.0.1:0".parse().unwrap(), shutdown.clone())
        .await
        .expect("the service starts");

    let client = tokio::task::spawn_blocking(move || {
        // signups from before the welcome feature: no job of their own
        let pool_url = url.clone();
        let mut jobs = Vec::new();
        for email in ["ada@example.com", "grace@example.com", "edsger@example.com"] {
            let (status, body) = request(
                addr,
                "POST",
                "/signups",
                Some(&format!(r#"{{"email": "{email}"}}"#)),
            );
            assert_eq!(status, 200, "{body}");
            jobs.push(json(&body)["job"].as_i64().expect("a job id"));
        }
        // the same email again: the insert fails, the transaction rolls back, and
        // no welcome job is left behind
        let (status, body) = request(
            addr,
            "POST",
            "/signups",
            Some(r#"{"email": "ada@example.com"}"#),
        );
        assert_eq!(status, 409, "{body}");
        let (status, body) = request(addr, "POST", "/backfills/welcome", None);
        assert_eq!(status, 200, "{body}");
        jobs.push(json(&body)["job"].as_i64().expect("a job id"));

        let deadline = Instant::now() + Duration::from_secs(30);
        for id in &jobs {
            loop {
                let (status, body) = request(addr, "GET", &format!("/jobs/{id}"), None);
                assert_eq!(status, 200, "{body}");
                if json(&body)["state"] == "completed" {
                    break;
                }
                assert!(Instant::now() < deadline, "job {id} never finished: {body}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let (status, page) = request(addr, "GET", "/admin/jobs", None);
        assert_eq!(status, 200);
        assert!(page.contains("<h1>Overview</h1>"), "{page}");
        assert!(
            page.contains(r#"data-count="completed">4<"#),
            "the four jobs, completed: {page}"
        );
        let (status, form) = request(addr, "GET", "/admin/jobs/enqueue", None);
        assert_eq!(status, 200);
        assert!(
            form.contains("welcome_backfill"),
            "the service's kinds: {form}"
        );
        let (status, _) = request(addr, "GET", "/jobs/99", None);
        assert_eq!(status, 404);
        (pool_url, jobs)
    });
    let (url, jobs) = client.await.expect("the client");
    shutdown.cancel();
    running.await.expect("joined").expect("a clean stop");

    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    let (signups, welcomed): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(welcomed_at) FROM signups")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!((signups, welcomed), (3, 3));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM iterjob_jobs")
        .fetch_one(&pool)
        .await
        .expect("jobs");
    assert_eq!(
        stored,
        jobs.len() as i64,
        "no job from the rolled-back signup"
    );
}
