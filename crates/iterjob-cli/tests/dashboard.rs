//! `iterjob dashboard` and `iterjob worker --dashboard`, as the real binary: a public
//! address without a token is refused before anything is served; loopback serves.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Sandbox, assert_error};

#[test]
fn a_public_address_without_a_token_is_refused() {
    let s = Sandbox::new();
    let mut cmd = s.cmd(&["dashboard", "--bind", "0.0.0.0:0"]);
    let o = cmd.env_remove("ITERJOB_DASHBOARD_TOKEN").output().unwrap();
    assert_error(
        &o,
        1,
        &[
            "refusing to serve the dashboard on 0.0.0.0:0 without an auth token",
            "--token",
        ],
    );
    let mut cmd = s.cmd(&["worker", "--dashboard", "[::]:0", "--until-idle"]);
    let o = cmd.env_remove("ITERJOB_DASHBOARD_TOKEN").output().unwrap();
    assert_error(&o, 1, &["without an auth token"]);
    let o = s.run(&["dashboard", "--bind", "0.0.0.0:0", "--token", "short"]);
    assert_error(&o, 1, &["at least 16 random characters"]);
    let o = s.run(&["dashboard", "--csv-upload", "nope=path"]);
    assert_error(&o, 1, &["kind `nope`", "demo_sync_products"]);
}

fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_as(port, path, &format!("127.0.0.1:{port}"))
}

/// A GET with this `Host` header, as a browser on a page of that name sends it.
fn http_get_as(port: u16, path: &str, host: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn loopback_serves_the_pages_and_metrics() {
    let s = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = s
        .cmd(&["dashboard", "--bind", &bind])
        .env_remove("ITERJOB_DASHBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Some(page) = http_get(port, "/") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not answer on {bind}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    // DNS rebinding: a page on attacker.example whose name now points at 127.0.0.1
    let rebound =
        http_get_as(port, "/jobs/1", &format!("attacker.example:{port}")).unwrap_or_default();
    let by_name = http_get_as(port, "/", &format!("localhost:{port}")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.contains("<h1>Overview</h1>"));
    assert!(
        rebound.starts_with("HTTP/1.1 421") || rebound.starts_with("HTTP/1.0 421"),
        "{rebound}"
    );
    assert!(
        rebound.contains("does not answer to the name `attacker.example`"),
        "{rebound}"
    );
    assert!(!rebound.contains("csrf"), "nothing of a page leaks");
    assert!(by_name.contains("<h1>Overview</h1>"), "{by_name}");
    assert!(
        metrics.contains("iterjob_jobs{state=\"queued\"} 0"),
        "{metrics}"
    );
}
