//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver with fantoccini, against a real worker
//! running slow jobs on a temporary SQLite file in this process.
//!
//! It watches a running job's progress bar advance without a page reload, pauses
//! it, sees the state change, resumes it, cancels another job, retries it with a
//! bulk action from the filtered list, and saves
//! screenshots at laptop and phone widths under `target/dashboard-screenshots/`.
//!
//! A second session drives the tasks pages: a bad value in the typed form shows
//! that field's message, a good one enqueues; a partitioned job's rate and ETA on
//! its page stay within 20 % of the truth measured from the store over 5 s; the
//! theme switch turns the pages dark and back.
//!
//! Without Chromium it is skipped, except under `CI`, where it fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Count, CountParams};
use fantoccini::{Client, ClientBuilder, Locator};
use iterjob::{JobState, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_dashboard::Dashboard;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// One browser at a time: two Chromiums on a 2-core machine slow each other's
/// live updates past what the tests measure.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// True when Chromium can run here; under `CI` its absence fails the test.
fn chromium_present() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing; CI must install them \
             (apt-get install -y chromium chromium-driver, as .ci/run does)"
        );
    }
    eprintln!(
        "skipped: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
    );
    false
}

/// The chromedriver process; killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_driver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (driver, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

async fn browser(driver_url: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("open a Chromium session through chromedriver")
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("running `{script}` in the page: {e}"))
}

/// Polls `check` until it returns `Some`, for up to `secs` seconds.
async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn badge(client: &Client, id: i64) -> String {
    let value = js(
        client,
        &format!("const b = document.querySelector('[data-job-state=\"{id}\"]'); return b ? b.textContent : '';"),
    )
    .await;
    value.as_str().unwrap_or_default().to_string()
}

async fn progress_value(client: &Client, id: i64) -> f64 {
    js(
        client,
        &format!("const p = document.querySelector('[data-job=\"{id}\"] progress'); return p ? p.value : -1;"),
    )
    .await
    .as_f64()
    .unwrap_or(-1.0)
}

async fn save(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.expect("take a screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("save the screenshot");
    eprintln!(
        "saved {} at {:?}",
        path.display(),
        START.get_or_init(std::time::Instant::now).elapsed()
    );
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
}

/// Navigates, failing if the page takes more than 15 s to load: a page that cannot
/// get a connection because earlier pages' live streams still hold them all.
async fn open(client: &Client, url: &str) {
    tokio::time::timeout(Duration::from_secs(15), client.goto(url))
        .await
        .unwrap_or_else(|_| panic!("loading {url} took over 15 s (live streams left open?)"))
        .unwrap_or_else(|e| panic!("loading {url}: {e}"));
}

async fn state_of(store: &dyn Store, id: i64) -> JobState {
    store.job_get(id).await.unwrap().unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_watches_pauses_resumes_and_cancels_in_chromium() {
    if !chromium_present() {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    START.get_or_init(std::time::Instant::now);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("jobs.db");
    let store: Arc<dyn Store> = Arc::new(
        iterjob_sqlite::SqliteStore::connect(db.to_str().unwrap())
            .await
            .unwrap(),
    );
    let slow = |up_to| {
        NewJob::of(
            &Count,
            &CountParams {
                up_to,
                sleep_ms: 20,
            },
        )
        .unwrap()
    };
    let watched = store.job_insert(&slow(100_000)).await.unwrap();
    let other = store.job_insert(&slow(100_000)).await.unwrap();
    // a few finished and failed jobs, so the overview has something to show
    for n in 0..3 {
        store
            .job_insert(
                &NewJob::of(
                    &Count,
                    &CountParams {
                        up_to: n * 10,
                        sleep_ms: 0,
                    },
                )
                .unwrap(),
            )
            .await
            .unwrap();
    }

    let mut config = WorkerConfig::default();
    config.concurrency = 3;
    config.poll_interval = Duration::from_millis(100);
    config.checkpoint_interval = Duration::from_millis(200);
    config.heartbeat_interval = Duration::from_millis(300);
    config.lease = Duration::from_secs(10);
    let worker =
        Arc::new(Worker::new(Arc::clone(&store), Registry::new().with(Count), config).unwrap());
    let shutdown = worker.shutdown_token();
    let running = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run().await }
    });

    let (listener, router) = Dashboard::new(Arc::clone(&store))
        .registry(Registry::new().with(Count))
        .live_interval(Duration::from_millis(300))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });

    let (_driver, driver_url) = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver_url, profile.path()).await;
    let shots = screenshot_dir();
    client.set_window_size(1366, 900).await.unwrap();

    // the watched job's page: the bar advances with no reload
    wait_for("the watched job to run", 20, || async {
        (state_of(&*store, watched).await == JobState::Running).then_some(())
    })
    .await;
    open(&client, &format!("{base}/jobs/{watched}")).await;
    js(&client, "window.__notReloaded = 42; return null;").await;
    wait_for("the live connection", 15, || async {
        let status = js(
            &client,
            "return document.getElementById('live-status').textContent;",
        )
        .await;
        status
            .as_str()
            .is_some_and(|s| s.contains("live"))
            .then_some(())
    })
    .await;
    let first = progress_value(&client, watched).await;
    let later = wait_for("the progress bar to advance", 20, || async {
        let now = progress_value(&client, watched).await;
        (now > first).then_some(now)
    })
    .await;
    assert!(later > first, "progress advanced from {first} to {later}");
    assert_eq!(
        js(&client, "return window.__notReloaded;").await,
        json!(42),
        "the page was not reloaded"
    );
    let rate = js(
        &client,
        &format!("return document.querySelector('[data-job=\"{watched}\"] .rate').textContent;"),
    )
    .await;
    assert!(
        rate.as_str().is_some_and(|r| r.ends_with("/s")),
        "a rate is shown: {rate}"
    );
    save(&client, &shots, "laptop-job-running").await;

    // pause it: the request reaches the worker, and the page shows the new state
    click(
        &client,
        &format!("form[data-action=pause][data-job-action=\"{watched}\"] button"),
    )
    .await;
    wait_for("the job to show as paused", 20, || async {
        (badge(&client, watched).await == "paused").then_some(())
    })
    .await;
    assert_eq!(state_of(&*store, watched).await, JobState::Paused);
    let paused_at = progress_value(&client, watched).await;
    save(&client, &shots, "laptop-job-paused").await;

    // resume it: it runs again from where it stopped
    click(
        &client,
        &format!("form[data-action=resume][data-job-action=\"{watched}\"] button"),
    )
    .await;
    wait_for("the job to run again", 20, || async {
        badge(&client, watched)
            .await
            .starts_with("running")
            .then_some(())
    })
    .await;
    let resumed = wait_for("progress after the resume", 20, || async {
        let now = progress_value(&client, watched).await;
        (now > paused_at).then_some(now)
    })
    .await;
    assert!(resumed > paused_at);

    // cancel the other one from the job list
    open(&client, &format!("{base}/jobs?state=running")).await;
    click(
        &client,
        &format!("form[data-action=cancel][data-job-action=\"{other}\"] button"),
    )
    .await;
    wait_for("the other job to show as cancelled", 20, || async {
        (badge(&client, other).await == "cancelled").then_some(())
    })
    .await;
    assert_eq!(state_of(&*store, other).await, JobState::Cancelled);
    let history = store.job_events(other, 10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.kind == iterjob::JobEventKind::OperatorCancel),
        "the cancel is in the job's history"
    );

    // screenshots for a human look, at a laptop and a phone width
    open(&client, &format!("{base}/")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    save(&client, &shots, "laptop-overview").await;
    open(&client, &format!("{base}/jobs")).await;
    save(&client, &shots, "laptop-jobs").await;
    open(&client, &format!("{base}/enqueue")).await;
    save(&client, &shots, "laptop-enqueue").await;
    open(&client, &format!("{base}/jobs/{other}")).await;
    save(&client, &shots, "laptop-job-cancelled").await;
    open(&client, &format!("{base}/jobs")).await;
    save(&client, &shots, "laptop-jobs-again").await;

    // bulk: every cancelled job retried from the filtered list in one submit
    open(&client, &format!("{base}/jobs?state=cancelled")).await;
    js(
        &client,
        "document.querySelector('#bulk select[name=action]').value = 'retry'; return null;",
    )
    .await;
    click(&client, "#bulk button[value=all]").await;
    let summary = wait_for("the bulk result", 15, || async {
        let text = js(
            &client,
            "const n = document.querySelector('.notice'); return n ? n.textContent : '';",
        )
        .await;
        text.as_str().filter(|t| !t.is_empty()).map(str::to_string)
    })
    .await;
    assert!(
        summary.contains("retry applied to 1 job."),
        "the bulk result: {summary}"
    );
    save(&client, &shots, "laptop-bulk-retry").await;
    wait_for("the retried job to leave cancelled", 20, || async {
        (state_of(&*store, other).await != JobState::Cancelled).then_some(())
    })
    .await;

    client.set_window_size(390, 844).await.unwrap();
    open(&client, &format!("{base}/")).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    save(&client, &shots, "phone-overview").await;
    open(&client, &format!("{base}/jobs")).await;
    save(&client, &shots, "phone-jobs").await;
    open(&client, &format!("{base}/jobs/{watched}")).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    save(&client, &shots, "phone-job-running").await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    )
    .await;
    assert!(
        overflow.as_f64().unwrap_or(1.0) <= 0.0,
        "the job page fits a phone's width (horizontal overflow {overflow} px)"
    );
    open(&client, &format!("{base}/jobs")).await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    )
    .await;
    assert!(
        overflow.as_f64().unwrap_or(1.0) <= 0.0,
        "the job list fits a phone's width (horizontal overflow {overflow} px)"
    );

    client.close().await.unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}

/// Walks `from..to`, sleeping `sleep_ms` per item; splits into equal ranges.
struct Span;

#[derive(serde::Serialize, serde::Deserialize)]
struct SpanParams {
    from: i64,
    to: i64,
    sleep_ms: u64,
}

impl iterjob::Job for Span {
    const KIND: &'static str = "span";
    const PARTITIONABLE: bool = true;
    type Params = SpanParams;
    type Cursor = i64;
    type Item = i64;

    fn enumerate(
        &self,
        p: &SpanParams,
        cursor: Option<i64>,
    ) -> Result<impl iterjob::enumerator::Enumerator<i64, i64>, iterjob::JobError> {
        Ok(iterjob::enumerator::range(p.from..p.to, cursor))
    }

    async fn process(
        &self,
        ctx: &iterjob::JobContext<SpanParams>,
        _n: i64,
    ) -> Result<(), iterjob::JobError> {
        tokio::time::sleep(Duration::from_millis(ctx.params.sleep_ms)).await;
        Ok(())
    }

    async fn total(&self, p: &SpanParams) -> Result<Option<u64>, iterjob::JobError> {
        Ok(Some((p.to - p.from).max(0) as u64))
    }

    async fn partition(
        &self,
        p: &SpanParams,
        n: u32,
    ) -> Result<Vec<SpanParams>, iterjob::JobError> {
        let step = (p.to - p.from) / i64::from(n);
        Ok((0..i64::from(n))
            .map(|i| SpanParams {
                from: p.from + i * step,
                to: if i + 1 == i64::from(n) {
                    p.to
                } else {
                    p.from + (i + 1) * step
                },
                sleep_ms: p.sleep_ms,
            })
            .collect())
    }
}

/// `1,234/s`, `35.2/s`, `0.20/s` → items per second.
fn parse_rate(text: &str) -> Option<f64> {
    text.strip_suffix("/s")?.replace(',', "").parse().ok()
}

/// `ETA 4m 09s`, `ETA 1h 05m`, `ETA 12s` → seconds.
fn parse_eta(text: &str) -> Option<f64> {
    let mut secs = 0.0;
    for part in text.strip_prefix("ETA ")?.split_whitespace() {
        let (n, unit) = part.split_at(part.len() - 1);
        let n: f64 = n.parse().ok()?;
        secs += n * match unit {
            "d" => 86_400.0,
            "h" => 3_600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => return None,
        };
    }
    Some(secs)
}

/// The page's background colour (the theme's `--bg`).
async fn background(client: &Client) -> String {
    js(
        client,
        "return getComputedStyle(document.documentElement).backgroundColor;",
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_runs_a_task_from_its_typed_form_and_watches_a_partitioned_job() {
    if !chromium_present() {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    START.get_or_init(std::time::Instant::now);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("jobs.db");
    let store: Arc<dyn Store> = Arc::new(
        iterjob_sqlite::SqliteStore::connect(db.to_str().unwrap())
            .await
            .unwrap(),
    );
    let registry = Registry::new().with(Count).with(Span);
    let mut config = WorkerConfig::default();
    config.concurrency = 4;
    config.poll_interval = Duration::from_millis(100);
    config.checkpoint_interval = Duration::from_millis(200);
    config.heartbeat_interval = Duration::from_millis(300);
    config.lease = Duration::from_secs(10);
    let worker = Arc::new(Worker::new(Arc::clone(&store), registry.clone(), config).unwrap());
    let shutdown = worker.shutdown_token();
    let running = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.run().await }
    });
    let (listener, router) = Dashboard::new(Arc::clone(&store))
        .registry(registry)
        .live_interval(Duration::from_millis(300))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });
    let (_driver, driver_url) = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver_url, profile.path()).await;
    let shots = screenshot_dir();
    client.set_window_size(1366, 900).await.unwrap();

    // the tasks page lists both kinds; the count kind's page has its typed form
    open(&client, &format!("{base}/tasks")).await;
    let listed = js(
        &client,
        "return [...document.querySelectorAll('.task h2')].map(h => h.textContent);",
    )
    .await;
    assert_eq!(listed, json!(["count", "span"]));
    click(&client, "a.button[href='/tasks/count']").await;
    let field = |name: &str| format!("[name=\"p.{name}\"]");
    let sleep_default = client
        .find(Locator::Css(&field("sleep_ms")))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        sleep_default.as_deref(),
        Some("0"),
        "the default is prefilled"
    );

    // a bad value: the field says what is wrong, nothing is enqueued
    let up_to = client.find(Locator::Css(&field("up_to"))).await.unwrap();
    up_to.send_keys("25").await.unwrap();
    let sleep = client.find(Locator::Css(&field("sleep_ms"))).await.unwrap();
    sleep.clear().await.unwrap();
    sleep.send_keys("-3").await.unwrap();
    click(&client, "form.typed button[type=submit]").await;
    let message = wait_for("the field's message", 15, || async {
        let text = js(
            &client,
            "const e = document.getElementById('f-sleep_ms-error'); return e ? e.textContent : '';",
        )
        .await;
        text.as_str().filter(|t| !t.is_empty()).map(str::to_string)
    })
    .await;
    assert_eq!(message, "must be at least 0");
    assert_eq!(
        js(
            &client,
            "return document.querySelector('[name=\"p.up_to\"]').value;"
        )
        .await,
        json!("25"),
        "what was typed is kept"
    );
    save(&client, &shots, "laptop-task-form-error").await;
    assert!(
        store
            .job_list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // a good one enqueues and lands on the new job's page
    let sleep = client.find(Locator::Css(&field("sleep_ms"))).await.unwrap();
    sleep.clear().await.unwrap();
    sleep.send_keys("1").await.unwrap();
    click(&client, "form.typed button[type=submit]").await;
    let url = wait_for("the new job's page", 15, || async {
        let url = client.current_url().await.ok()?;
        url.path()
            .starts_with("/jobs/")
            .then(|| url.path().to_string())
    })
    .await;
    let id: i64 = url.trim_start_matches("/jobs/").parse().unwrap();
    let job = store.job_get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.kind.as_str(), &job.params),
        ("count", &json!({"up_to": 25, "sleep_ms": 1}))
    );

    // a partitioned job: its page's rate and ETA against the truth over 5 s
    let parent = store
        .job_insert(
            &NewJob::of(
                &Span,
                &SpanParams {
                    from: 0,
                    to: 200_000,
                    sleep_ms: 10,
                },
            )
            .unwrap()
            .partitions(4),
        )
        .await
        .unwrap();
    wait_for("the partitions to run", 30, || async {
        let partitions = store.job_partitions(parent).await.unwrap();
        (partitions.len() == 4
            && partitions
                .iter()
                .all(|p| p.state == JobState::Running && p.items_done > 0))
        .then_some(())
    })
    .await;
    open(&client, &format!("{base}/jobs/{parent}")).await;
    // the page's own window (ten ticks of 0.3 s) fills first
    tokio::time::sleep(Duration::from_secs(4)).await;
    let done = |store: Arc<dyn Store>| async move {
        let job = store.job_get(parent).await.unwrap().unwrap();
        (
            tokio::time::Instant::now(),
            job.items_done,
            job.items_total.unwrap(),
        )
    };
    let (t0, d0, total) = done(Arc::clone(&store)).await;
    let mut compared = 0;
    while t0.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (t, d, _) = done(Arc::clone(&store)).await;
        let truth = (d - d0) as f64 / t.duration_since(t0).as_secs_f64();
        let shown = js(
            &client,
            &format!(
                "const m = document.querySelector('[data-job=\"{parent}\"] .meta'); \
                 return [m.querySelector('.rate').textContent, m.querySelector('.eta').textContent];"
            ),
        )
        .await;
        let rate = shown[0].as_str().and_then(parse_rate);
        let eta = shown[1].as_str().and_then(parse_eta);
        if t.duration_since(t0) < Duration::from_secs(2) {
            continue; // the truth's own window is too short yet
        }
        let (Some(rate), Some(eta)) = (rate, eta) else {
            panic!("the parent shows a rate and an ETA: {shown}");
        };
        let true_eta = (total - d) as f64 / truth;
        assert!(
            (rate / truth - 1.0).abs() <= 0.2,
            "shown rate {rate}/s vs {truth:.1}/s measured from the store"
        );
        assert!(
            (eta / true_eta - 1.0).abs() <= 0.2,
            "shown ETA {eta} s vs {true_eta:.0} s from the measured rate"
        );
        compared += 1;
    }
    assert!(compared >= 3, "compared {compared} times over 5 s");
    save(&client, &shots, "laptop-partitioned-job").await;

    // the overview lists this worker, its slots in use refreshed live
    open(&client, &format!("{base}/")).await;
    let slots = wait_for("the worker's slots, live", 20, || async {
        let text = js(
            &client,
            "const r = document.querySelector('#workers tbody tr'); \
             return r ? r.children[3].textContent : '';",
        )
        .await;
        text.as_str()
            .filter(|t| t.ends_with("/ 4") && !t.starts_with("0 "))
            .map(str::to_string)
    })
    .await;
    assert_eq!(
        slots, "4 / 4",
        "the four partitions fill the worker's slots"
    );
    save(&client, &shots, "laptop-overview-workers").await;

    // dark mode: the switch turns it on, it stays on across pages, and off again
    open(&client, &format!("{base}/tasks")).await;
    let light = background(&client).await;
    assert_eq!(
        light, "rgb(246, 247, 249)",
        "headless Chromium prefers light"
    );
    click(&client, "#theme").await;
    assert_eq!(
        background(&client).await,
        "rgb(15, 19, 26)",
        "dark after the switch"
    );
    save(&client, &shots, "laptop-tasks-dark").await;
    open(&client, &format!("{base}/tasks/count")).await;
    assert_eq!(
        background(&client).await,
        "rgb(15, 19, 26)",
        "remembered on the next page"
    );
    client.set_window_size(390, 844).await.unwrap();
    save(&client, &shots, "phone-task-form-dark").await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
    )
    .await;
    assert!(
        overflow.as_f64().unwrap_or(1.0) <= 0.0,
        "the task form fits a phone's width (horizontal overflow {overflow} px)"
    );
    click(&client, "#theme").await; // light
    assert_eq!(background(&client).await, light);
    click(&client, "#theme").await; // the system's again
    assert_eq!(
        js(
            &client,
            "return document.documentElement.dataset.theme || 'auto';"
        )
        .await,
        json!("auto")
    );
    open(&client, &format!("{base}/tasks")).await;
    save(&client, &shots, "phone-tasks").await;

    client.close().await.unwrap();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}
