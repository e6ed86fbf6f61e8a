//! How the dashboard's pages hold up on a million jobs in SQLite.
//!
//! ```sh
//! cargo run --release -p iterjob-dashboard --example million_jobs [-- JOBS]
//! ```
//!
//! Fills a temporary SQLite store with JOBS jobs (default 1,000,000: mostly
//! completed, some queued, failed and paused, three kinds, two queues) in one SQL
//! statement, then times each page through the dashboard's router: the first page,
//! a page deep in the list (keyset: `before` an id), filtered pages, text searches
//! (bounded by `MAX_SEARCH_SCAN`), a job page, the overview and the tasks page.
//! Prints the median of 5 requests for each. With `ITERJOB_MILLION_DB=PATH` the
//! store is kept at PATH (which must not exist yet), to look at query plans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use iterjob::Store;
use iterjob_dashboard::Dashboard;
use tower::ServiceExt;

const FILL: &str = "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
INSERT INTO iterjob_jobs (kind, queue, state, params, max_attempts, created_at, run_at,
                          finished_at, items_done, items_total, running_ms, last_error)
SELECT CASE WHEN i % 1000 = 7 THEN 'rare_report' WHEN i % 2 = 0 THEN 'sync_products'
            ELSE 'reindex' END,
       CASE WHEN i % 10 = 0 THEN 'bulk' ELSE 'default' END,
       CASE WHEN i > ?1 - 9000 THEN 'queued'
            WHEN i % 1111 = 0 THEN 'failed'
            WHEN i % 9999 = 0 THEN 'paused'
            ELSE 'completed' END,
       json_object('shard', i % 64, 'first_id', i * 1000),
       10, 1700000000000 + i * 10, 1700000000000 + i * 10,
       CASE WHEN i > ?1 - 9000 THEN NULL ELSE 1700000000000 + i * 10 + 5000 END,
       1000, 1000, 5000,
       CASE WHEN i % 1111 = 0 THEN 'syncing product: upstream timed out' END
FROM n";

async fn time(router: &axum::Router, uri: &str) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs: i64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    // ITERJOB_MILLION_DB=path keeps the filled store there, to look at its plans
    let path = std::env::var_os("ITERJOB_MILLION_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("million.db"));
    let store = iterjob_sqlite::SqliteStore::connect(path.to_str().unwrap()).await?;
    let started = Instant::now();
    sqlx::query(FILL).bind(jobs).execute(store.pool()).await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    println!("filled {jobs} jobs in {:.1?}", started.elapsed());
    let store: Arc<dyn Store> = Arc::new(store);
    let router = Dashboard::new(store).router();
    let deep = jobs / 2;
    for (what, uri) in [
        ("first page", "/jobs".to_string()),
        (
            "a page in the middle (before=N/2)",
            format!("/jobs?before={deep}"),
        ),
        ("last page (before=60)", "/jobs?before=60".to_string()),
        ("state=failed (0.09%)", "/jobs?state=failed".to_string()),
        (
            "state=failed, next page",
            format!("/jobs?state=failed&before={deep}"),
        ),
        ("state=paused (0.01%)", "/jobs?state=paused".to_string()),
        (
            "kind=rare_report (0.1%)",
            "/jobs?kind=rare_report".to_string(),
        ),
        ("queue=bulk (10%)", "/jobs?queue=bulk".to_string()),
        (
            "kind + queue + state",
            "/jobs?kind=sync_products&queue=bulk&state=completed".to_string(),
        ),
        (
            "search: text in errors (0.09% of jobs)",
            "/jobs?q=timed%20out".to_string(),
        ),
        (
            "search: no match (reads MAX_SEARCH_SCAN jobs)",
            "/jobs?q=no-such-text".to_string(),
        ),
        (
            "search: no match, next page (before=N/2)",
            format!("/jobs?q=no-such-text&before={deep}"),
        ),
        ("search: an id", format!("/jobs?q=%23{deep}")),
        ("a job page", format!("/jobs/{deep}")),
        ("overview (counts, samples)", "/".to_string()),
        ("tasks (counts by kind, last runs)", "/tasks".to_string()),
        ("/metrics (counts)", "/metrics".to_string()),
    ] {
        println!("{:>10.2?}  {what}  {uri}", time(&router, &uri).await);
    }
    Ok(())
}
