//! The dashboard mounted in your own service, next to a worker in the same process.
//!
//! ```text
//! cargo run -p iterjob-examples --example dashboard
//! # then open http://127.0.0.1:8080/admin/jobs
//! ```
//!
//! The service answers `/` itself and nests the dashboard under `/admin/jobs`. It
//! registers two kinds: `resize_images` (a slow walk over an id range, to watch
//! progress bars move) and `import_customers`, which reads a CSV file: its enqueue
//! form takes an upload (stored under `./uploads`). Both describe themselves
//! (`Job::DESCRIPTION`) and their parameters (`Job::params_schema`, derived with
//! schemars), so the Tasks page offers a typed form for each: the width prefilled,
//! the format as a select, each field's problem shown next to it. A worker runs in the same
//! process, so `/admin/jobs/metrics` includes its runtime metrics. Two jobs are
//! enqueued at start. Ctrl-C stops everything; the jobs resume at the next start.
//!
//! Set `JOBS_ADMIN_TOKEN` to require a token (and then `BIND` may be any address).

use std::sync::Arc;
use std::time::Duration;

use iterjob::enumerator::{self, Enumerator, FileRange};
use iterjob::{Job, JobContext, JobError, NewJob, Registry, Store, Worker, WorkerConfig};
use iterjob_dashboard::Dashboard;
use iterjob_sqlite::SqliteStore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Resizes the images with ids in a range (here: sleeps a little per image).
struct ResizeImages;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ResizeParams {
    /// The first image id, inclusive.
    first_id: i64,
    /// The last image id, inclusive.
    last_id: i64,
    /// The width to resize to, in pixels.
    #[serde(default = "default_width")]
    width: u32,
    /// The format to write.
    #[serde(default)]
    format: Format,
}

/// An image format.
#[derive(Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Webp,
    Jpeg,
    /// Lossless, larger.
    Png,
}

fn default_width() -> u32 {
    800
}

impl Job for ResizeImages {
    const KIND: &'static str = "resize_images";
    const DESCRIPTION: &'static str =
        "Resizes every image with an id in a range (here: sleeps 5 ms per image).";
    type Params = ResizeParams;
    type Cursor = i64;
    type Item = i64;

    fn params_schema() -> Option<serde_json::Value> {
        iterjob::params_schema::<ResizeParams>()
    }

    fn enumerate(
        &self,
        p: &ResizeParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<i64, i64>, JobError> {
        Ok(enumerator::range(p.first_id..p.last_id + 1, cursor))
    }

    async fn process(&self, _ctx: &JobContext<ResizeParams>, _image: i64) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }

    async fn total(&self, p: &ResizeParams) -> Result<Option<u64>, JobError> {
        Ok(Some((p.last_id - p.first_id + 1).max(0) as u64))
    }
}

/// Imports customers from an uploaded CSV file, one row at a time.
struct ImportCustomers;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    /// Set by the dashboard to the stored upload's path.
    path: String,
}

impl Job for ImportCustomers {
    const KIND: &'static str = "import_customers";
    const DESCRIPTION: &'static str =
        "Imports customers from a CSV file with a header row, one row at a time.";
    type Params = ImportParams;

    fn params_schema() -> Option<serde_json::Value> {
        iterjob::params_schema::<ImportParams>()
    }
    type Cursor = enumerator::FileCursor;
    type Item = csv::StringRecord;

    fn enumerate(
        &self,
        p: &ImportParams,
        cursor: Option<enumerator::FileCursor>,
    ) -> Result<impl Enumerator<csv::StringRecord, enumerator::FileCursor>, JobError> {
        Ok(enumerator::csv_records(
            &p.path,
            FileRange::default(),
            cursor,
            true,
        ))
    }

    async fn process(
        &self,
        _ctx: &JobContext<ImportParams>,
        row: csv::StringRecord,
    ) -> Result<(), JobError> {
        if row.get(0).is_none_or(str::is_empty) {
            return Err(JobError::fatal("a customer row without an id"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::connect("sqlite://dashboard-example.db").await?);
    let registry = Registry::new().with(ResizeImages).with(ImportCustomers);

    // runtime metrics of the worker below, rendered at /admin/jobs/metrics
    let metrics = iterjob_dashboard::install_prometheus()?;
    let mut jobs_admin = Dashboard::new(Arc::clone(&store))
        .registry(registry.clone())
        .csv_upload("import_customers", "path", "uploads")
        .mount_path("/admin/jobs")
        .prometheus(metrics);
    if let Ok(token) = std::env::var("JOBS_ADMIN_TOKEN") {
        jobs_admin = jobs_admin.token(token);
    }
    let addr: std::net::SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:8080".to_string())
        .parse()?;
    jobs_admin.check_bind(addr)?; // a public address needs a token
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "my service; jobs at /admin/jobs" }),
        )
        .nest("/admin/jobs", jobs_admin.router());

    for (first, last) in [(1, 20_000), (20_001, 60_000)] {
        let params = ResizeParams {
            first_id: first,
            last_id: last,
            width: 800,
            format: Format::Webp,
        };
        store
            .job_insert(&NewJob::of(&ResizeImages, &params)?.unique_key(format!("resize-{first}")))
            .await?;
    }

    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        registry,
        WorkerConfig::default(),
    )?);
    let shutdown = worker.shutdown_token();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("dashboard on http://{}/admin/jobs", listener.local_addr()?);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            tokio::signal::ctrl_c().await.ok();
            shutdown.cancel();
        }
    });
    worker.run().await?;
    server.await??;
    Ok(())
}
